"""One config file per training run (``training/configs/{smoke,rt,paper}.json``) with CLI overrides.

A run config is a tree of frozen dataclasses; the JSON file lists only what differs from the
defaults below, and ``--set section.key=value`` overrides any leaf (the value is parsed as JSON,
else taken as a string: ``--set retrain.steps=2000 --set data.sources='["celeba"]'``). Unknown keys
are errors, so a typo never silently trains the wrong thing. The resolved config is written to
``runs/NAME/config.json`` and is what ``--resume`` reuses.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "StageConfig",
    "PretrainConfig",
    "CollapseConfig",
    "SearchConfig",
    "DeriveConfig",
    "RetrainConfig",
    "ExportConfig",
    "RunConfig",
    "CONFIG_DIR",
    "PROJECT_ROOT",
    "load_run_config",
    "apply_overrides",
    "config_to_dict",
]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class AugmentConfig:
    """Webcam-like variation of the clean crop (applied before degradation; target = augmented crop).

    Attributes:
        flip: probability of a horizontal flip.
        scale: relative zoom jitter of the alignment, uniform in ``[-scale, scale]``.
        rotate_deg: in-plane rotation jitter in degrees, uniform in ``[-rotate_deg, rotate_deg]``.
        shift: translation jitter in units of the crop side.
        temperature: white-balance shift: red gain ``1 + t``, blue gain ``1 - t``, ``t`` uniform in
            ``[-temperature, temperature]``.
        tint: green gain jitter (magenta/green tint).
        exposure: exposure jitter in stops (gain ``2 ** u``, ``u`` uniform in ``[-exposure, exposure]``).
    """

    flip: float = 0.5
    scale: float = 0.06
    rotate_deg: float = 6.0
    shift: float = 0.03
    temperature: float = 0.08
    tint: float = 0.03
    exposure: float = 0.3


@dataclass(frozen=True)
class DataConfig:
    """Where the faces come from and how a training sample is made.

    Attributes:
        faces_dir: the shared faces folder with ``index.csv`` (absolute, or relative to the project
            root); only ``split == train`` is used.
        sources: keep only these sources (``lfw``, ``celeba``, ``glint``); empty = all.
        max_per_identity: keep at most this many photos per identity (index order); 0 = all.
        max_images: keep at most this many train images (identities with most images first); 0 = all.
        val_identities: identities held out of training for validation (from the train split).
        val_images: size of the fixed validation batch.
        context: side of the cached crop relative to the model crop (room for alignment jitter).
        cache_dir: folder for the aligned-crop and reference-feature caches (relative to the
            project root unless absolute).
        n_refs: largest number of clean reference photos behind one identity prior.
        p_no_identity: probability that a sample is trained without identity prior.
        degrade: overrides of :class:`training.degrade.pipeline.DegradationConfig` fields.
        augment: webcam-like augmentation.
    """

    faces_dir: str = "../shared/faces"
    sources: tuple[str, ...] = ()
    max_per_identity: int = 0
    max_images: int = 0
    val_identities: int = 16
    val_images: int = 32
    context: float = 1.25
    cache_dir: str = "runs/.cache"
    n_refs: int = 3
    p_no_identity: float = 0.3
    degrade: dict[str, Any] = field(default_factory=dict)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def _need(ok: bool, what: str) -> None:
    """``ValueError(what)`` unless ``ok`` (:func:`_build` names the config section)."""
    if not ok:
        raise ValueError(what)


@dataclass(frozen=True)
class StageConfig:
    """Length, batch and bookkeeping intervals of one trained stage (see :class:`training.loop.LoopSettings`).

    ``patch`` trains on random ``patch x patch`` windows of the aligned crop (0 = the whole crop):
    the networks are convolutional, so a search or warm-up on patches sees the same pixel scale at
    a fraction of the cost. ``val_images`` caps the stage's validation batch (0 = ``data.val_images``).
    """

    steps: int = 1000
    batch: int = 16
    patch: int = 0
    val_images: int = 0
    lr: float = 1e-3
    ckpt_every: int = 200
    eval_every: int = 200
    log_every: int = 10
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        # Checked here, at load time, so a bad --set fails before config.json is written.
        _need(self.steps >= 0 and self.patch >= 0 and self.val_images >= 0, "steps, patch and val_images must be >= 0")
        _need(self.batch >= 1, f"batch: expected >= 1, got {self.batch}")
        _need(self.lr > 0, f"lr: expected > 0, got {self.lr}")
        _need(min(self.ckpt_every, self.eval_every, self.log_every) >= 0, "ckpt_every, eval_every and log_every must be >= 0")


@dataclass(frozen=True)
class PretrainConfig(StageConfig):
    """Task encoders on single-degradation data (L1 to the clean crop) and the classifier (BCE).

    ``batch`` is per task; each step trains all three encoders and the classifier.
    """

    lr: float = 1e-3


@dataclass(frozen=True)
class CollapseConfig:
    """Guard against the DARTS collapse to parameter-free operators.

    Attributes:
        max_param_free: a cell is collapsed when more than this share of its edges has a
            parameter-free operator (skip / zero / pooling) as the strongest one.
        action: ``"freeze"`` stops the architecture updates and restores the last healthy α/β
            (DARTS+ style early stop); ``"warn"`` only logs.
    """

    max_param_free: float = 0.5
    action: str = "freeze"


@dataclass(frozen=True)
class SearchConfig(StageConfig):
    """Alternating DARTS-style search: weights on one half of the data, α/β on the other.

    Attributes:
        warmup: weight-only steps before the first architecture update.
        arch_lr: Adam learning rate of α/β.
        arch_weight_decay: weight decay of α/β.
    """

    lr: float = 1e-3
    warmup: int = 200
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    collapse: CollapseConfig = field(default_factory=CollapseConfig)


@dataclass(frozen=True)
class DeriveConfig:
    """Turning α/β into a genotype.

    Attributes:
        max_skip: at most this many skip edges per cell in the derived genotype (the second line of
            defence against collapse; -1 = no cap).
    """

    max_skip: int = 2


@dataclass(frozen=True)
class RetrainConfig(StageConfig):
    """The fused network trained with ``L2 + lambda_per * L_per + lambda_iden * L_iden`` (Adam).

    Attributes:
        lambda_per: perceptual-loss weight (paper 0.04).
        lambda_iden: identity-loss weight (paper 0.003).
        lr_final: learning rate at the last step, cosine decay from ``lr`` (``lr`` = no decay).
        from_search: start from the search supernet's weights along the derived architecture
            (else fresh fusion cells with the pretrained encoders and classifier).
        bn_batches: training batches used to re-estimate batch-norm statistics after deriving.
        init: fused weights to start from instead (e.g. a shipped ``weights.safetensors`` of the
            same genotype); parameters the file lacks, such as a head part added since, keep their
            initialisation and are listed. Empty: start as ``from_search`` says.
        lr_warmup: steps of linear learning-rate warm-up from ~0 (for fine-tuning with ``init``:
            both CPU fine-tunes lost 0.3-0.4 dB of validation PSNR in their first 200 steps).
        new_lr_scale: learning-rate factor for the parameters ``init`` lacks: a part added since
            starts from scratch beside converged weights that want a small rate (a head part added
            in session 6 barely moved in 900 steps at 1e-4; MODEL card).
    """

    lr: float = 5e-4
    lambda_per: float = 0.04
    lambda_iden: float = 0.003
    lr_final: float = 5e-5
    from_search: bool = True
    bn_batches: int = 4
    init: str = ""
    lr_warmup: int = 0
    new_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _need(self.lr_final > 0, f"lr_final: expected > 0, got {self.lr_final}")
        _need(self.new_lr_scale > 0, f"new_lr_scale: expected > 0, got {self.new_lr_scale}")
        _need(self.lr_warmup >= 0, f"lr_warmup: expected >= 0 steps, got {self.lr_warmup}")


@dataclass(frozen=True)
class ExportConfig:
    """What the export stage writes besides genotype + weights."""

    onnx: bool = True


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run.

    Attributes:
        name: config name (``smoke``, ``rt``, ``paper``).
        engine: network size in the :mod:`engine.configs` registry.
        seed: the run seed; every random draw derives from it.
        device: ``auto``, ``cpu`` or ``cuda``.
        amp: mixed precision on CUDA: ``auto``, ``bf16``, ``fp16``, ``off``.
        threads: torch CPU threads per process (0 = leave torch's default).
    """

    name: str = "custom"
    engine: str = "rt"
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    threads: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    derive: DeriveConfig = field(default_factory=DeriveConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Check/convert a JSON value to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config {where}: expected an object, got {value!r}")
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config {where}: expected a list, got {value!r}")
        return tuple(_convert(typing.get_args(tp)[0], v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config {where}: expected an object, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    raise UserError(f"config {where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"config {where or 'root'}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}".lstrip(".")) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise UserError(f"config {where + '.' if where else ''}{exc}") from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings to a nested dict (value parsed as JSON, else a string)."""
    out = json.loads(json.dumps(tree))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects section.key=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {p!r} is not a section")
        node[parts[-1]] = value
    return out


def load_run_config(name_or_path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load ``training/configs/<name>.json`` (or a JSON path), apply ``--set`` overrides, validate.

    Raises:
        UserError: unknown config name, unreadable JSON, unknown key or wrong type.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise UserError(f"no run config {str(name_or_path)!r} (known: {', '.join(known)}, or a .json path)")
    try:
        tree = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    defaults = config_to_dict(RunConfig())
    merged = _merge(defaults, tree)
    merged = apply_overrides(merged, list(overrides or []))
    return _build(RunConfig, merged, "")


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out
