"""The columns of an evaluation: classical baselines and trained NASFE checkpoints behind one interface.

A :class:`Method` restores a batch of aligned crops; baselines run image by image, NASFE models run
in batches through the fused network of :mod:`engine.build`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserError
from training.eval.baselines import BASELINES, Baseline

__all__ = ["Method", "ModelSpec", "baseline_method", "model_method", "parse_model_spec"]

#: ``restore(crops, kernels)``: ``crops`` ``(N, S, S, 3)`` uint8 RGB, ``kernels`` the true kernel of
#: each crop or ``None``; returns one ``(S, S, 3)`` uint8 RGB crop per input, or ``None`` where the
#: method does not apply.
RestoreFn = Callable[[np.ndarray, Sequence[np.ndarray | None]], list[np.ndarray | None]]


@dataclass(frozen=True)
class Method:
    """A report column. ``kind`` is ``"input"`` (the degraded image), ``"baseline"``, ``"oracle"``
    (reads the true kernel) or ``"model"``; ``slow`` methods run on a subset of each set."""

    name: str
    label: str
    kind: str
    restore: RestoreFn
    slow: bool = False


def baseline_method(baseline: Baseline) -> Method:
    """Wrap a per-image :class:`~training.eval.baselines.Baseline` as a batch :class:`Method`."""

    def restore(crops: np.ndarray, kernels: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
        return [baseline.fn(c, k) for c, k in zip(crops, kernels)]

    kind = "input" if baseline.name == "degraded" else "oracle" if baseline.oracle else "baseline"
    return Method(baseline.name, baseline.label, kind, restore, baseline.slow)


@dataclass(frozen=True)
class ModelSpec:
    """A trained network to evaluate: report name, genotype (as ``engine.build.load_fused`` takes
    it) and weights file."""

    name: str
    genotype: str
    weights: Path


def parse_model_spec(text: str) -> ModelSpec:
    """``NAME=GENOTYPE:WEIGHTS`` -> :class:`ModelSpec` (raises :class:`UserError` when malformed)."""
    name, eq, rest = text.partition("=")
    genotype, colon, weights = rest.partition(":")
    if not (eq and colon and name.strip() and genotype and weights):
        raise UserError(f"--model expects NAME=GENOTYPE:WEIGHTS, got {text!r}")
    if name.strip() in BASELINES or name.strip() == "clean":
        raise UserError(f"--model name {name.strip()!r} clashes with a baseline; pick another")
    return ModelSpec(name.strip(), genotype, Path(weights))


def model_method(spec: ModelSpec, batch_size: int = 16) -> Method:
    """Load a fused NASFE network and wrap it as a :class:`Method` (CPU, no grad, fp32).

    The network sees ``(B, 3, S, S)`` RGB in [0, 1]; the degradation prior comes from its own
    classifier and no identity prior is given (``prior=None, identity=None``).
    """
    import torch

    from engine.build import load_fused

    if not spec.weights.is_file():
        raise UserError(f"weights file not found: {spec.weights}")
    net = load_fused(spec.genotype, spec.weights).eval()

    @torch.inference_mode()
    def restore(crops: np.ndarray, kernels: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for i in range(0, len(crops), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[i:i + batch_size])).permute(0, 3, 1, 2)
            y = net(x.float() / 255.0).clamp(0.0, 1.0)
            y = (y * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            out.extend(y)
        return out

    return Method(spec.name, spec.name, "model", restore)
