"""Training stages in run order: pretrain -> search -> derive -> retrain -> export.

Each stage module has ``run(ctx)``; :func:`run_stages` runs a sequence of them in one process
(one process group under torchrun). A trained stage whose steps or time budget are used up returns
at once when resumed, so ``nasfe-train all --resume`` continues wherever the run stopped.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib import import_module

from training.stages.context import open_run

__all__ = ["STAGES", "run_stages"]

STAGES: tuple[str, ...] = ("pretrain", "search", "derive", "retrain", "export")


def run_stages(args: argparse.Namespace, stages: Sequence[str]) -> int:
    """Open the run described by ``args`` and run ``stages`` in order; returns the exit code 0."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; known: {STAGES}")
    with open_run(args, tuple(stages)) as ctx:
        for name in stages:
            import_module(f"training.stages.{name}").run(ctx)
    return 0
