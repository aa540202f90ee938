"""What every stage needs: the run's config, folder, process placement, data, and the CLI glue.

A run folder ``runs/NAME`` holds ``config.json`` (the resolved run config), one folder per trained
stage (``pretrain/``, ``search/``, ``retrain/``: checkpoints, logs, curves, final weights),
``genotype.json`` from derive, ``best/`` (best retrained weights + genotype) and ``export/``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from engine.configs import NASFEConfig, get_config
from engine.errors import UserError
from training.checkpoint import latest_checkpoint, write_json
from training.data import FaceSet, load_face_set, split_validation
from training.run_config import RunConfig, config_to_dict, load_run_config
from training.runtime import Runtime, runtime_session

__all__ = ["RunContext", "add_run_arguments", "open_run", "TRAINED_STAGES"]

#: Stages that train (and so have checkpoints), in run order.
TRAINED_STAGES: tuple[str, ...] = ("pretrain", "search", "retrain")


@dataclass
class RunContext:
    """One run as seen by one process.

    Attributes:
        cfg: the resolved run config.
        out: the run folder.
        runtime: rank, device, precision.
        resume: continue from checkpoints instead of refusing to overwrite them.
    """

    cfg: RunConfig
    out: Path
    runtime: Runtime
    resume: bool = False
    #: Objects built once per run and shared by the stages of one process (e.g. the reference table).
    memo: dict = field(default_factory=dict, repr=False)

    @cached_property
    def net(self) -> NASFEConfig:
        """The network size (from :mod:`engine.configs`)."""
        return get_config(self.cfg.engine)

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    @cached_property
    def faces(self) -> FaceSet:
        """The aligned train faces (cache built on first use)."""
        return load_face_set(self.cfg.data, self.net.crop_size, self.runtime)

    @cached_property
    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """``(train_idx, val_idx)``: validation identities held out of the train split."""
        return split_validation(self.faces.identity, self.cfg.data.val_identities, self.cfg.seed)

    def check_fresh(self, stage: str) -> None:
        """Refuse to overwrite a stage's checkpoints unless resuming."""
        if not self.resume and latest_checkpoint(self.stage_dir(stage) / "checkpoints") is not None:
            raise UserError(f"{self.stage_dir(stage)} already has checkpoints: pass --resume to continue, "
                            f"or choose another --out")


def add_run_arguments(parser: argparse.ArgumentParser, max_minutes_help: str) -> None:
    """The options every training command shares."""
    parser.add_argument("--config", help="run config: smoke, rt, rt_wide, paper, or a .json path "
                        "(default with --resume: the run's own config.json)")
    parser.add_argument("--out", required=True, type=Path, help="run folder, e.g. runs/rt1")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoints in --out (same data order, optimiser, RNG)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set retrain.steps=5000 (repeatable)")
    parser.add_argument("--max-minutes", type=float, help=max_minutes_help)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the config's device")


def resolve_config(args: argparse.Namespace, stages: tuple[str, ...]) -> RunConfig:
    """The run config for these arguments: ``--config`` (or the run's saved one when resuming),
    then ``--max-minutes`` for ``stages`` and ``--device``, then the ``--set`` overrides."""
    extra = [f"{s}.max_minutes={args.max_minutes}" for s in stages] if args.max_minutes is not None else []
    if args.device:
        extra.append(f"device={args.device}")
    overrides = extra + list(args.overrides)
    saved = args.out / "config.json"
    if not args.config and not saved.is_file():
        raise UserError(f"--config is required ({args.out} has no config.json to continue from)")
    return load_run_config(args.config or saved, overrides)


@contextmanager
def open_run(args: argparse.Namespace, stages: tuple[str, ...]) -> Iterator[RunContext]:
    """Resolve the config, join the process group, write ``config.json`` (rank 0), set threads."""
    cfg = resolve_config(args, stages)
    if args.resume and not args.out.is_dir():
        raise UserError(f"nothing to resume: {args.out} does not exist")
    get_config(cfg.engine)  # unknown network size -> one-line error before any work
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with runtime_session(cfg.device, cfg.amp) as runtime:
        if runtime.is_main:
            args.out.mkdir(parents=True, exist_ok=True)
            write_json(args.out / "config.json", config_to_dict(cfg))
        yield RunContext(cfg=cfg, out=args.out, runtime=runtime, resume=args.resume)
