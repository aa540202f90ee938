"""The columns of an evaluation: classical baselines and trained NASFE networks behind one interface.

A :class:`Method` restores a batch of aligned crops, given per-crop :class:`Hints`; baselines run
image by image, NASFE networks run in batches through :func:`engine.build.load_fused`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserError
from training.eval.baselines import BASELINES, Baseline

__all__ = ["Hints", "Method", "ModelSpec", "IDENTITY_MODES", "baseline_method", "model_methods",
           "parse_model_spec"]


@dataclass(frozen=True)
class Hints:
    """What a method may know about a test crop besides the crop itself.

    Attributes:
        kernel: the true ``(k, k)`` blur kernel, or ``None`` (read only by oracle methods).
        identity: ``(128, h, w)`` float32 identity prior (:mod:`engine.identity`) from the person's
            *other* clean photos, or ``None`` when there are none.
    """

    kernel: np.ndarray | None = None
    identity: np.ndarray | None = None


#: ``restore(crops, hints)``: ``crops`` ``(N, S, S, 3)`` uint8 RGB, one :class:`Hints` per crop;
#: returns one ``(S, S, 3)`` uint8 RGB crop per input, or ``None`` where the method does not apply.
RestoreFn = Callable[[np.ndarray, Sequence[Hints]], list[np.ndarray | None]]


@dataclass(frozen=True)
class Method:
    """A report column.

    ``kind`` is ``"input"`` (the degraded image), ``"baseline"``, ``"oracle"`` (reads the true
    kernel) or ``"model"``; ``slow`` methods run on a subset of each set; ``uses_identity`` methods
    want :attr:`Hints.identity` filled in.
    """

    name: str
    label: str
    kind: str
    restore: RestoreFn
    slow: bool = False
    uses_identity: bool = False


def baseline_method(baseline: Baseline) -> Method:
    """Wrap a per-image :class:`~training.eval.baselines.Baseline` as a batch :class:`Method`."""

    def restore(crops: np.ndarray, hints: Sequence[Hints]) -> list[np.ndarray | None]:
        return [baseline.fn(c, h.kernel) for c, h in zip(crops, hints)]

    kind = "input" if baseline.name == "degraded" else "oracle" if baseline.oracle else "baseline"
    return Method(baseline.name, baseline.label, kind, restore, baseline.slow)


@dataclass(frozen=True)
class ModelSpec:
    """A trained network to evaluate: report name, ``genotype.json`` and ``.safetensors`` weights
    (as :func:`engine.build.load_fused` takes them)."""

    name: str
    genotype: Path
    weights: Path


def parse_model_spec(text: str) -> ModelSpec:
    """``NAME=GENOTYPE:WEIGHTS`` -> :class:`ModelSpec` (raises :class:`UserError` when malformed)."""
    name, eq, rest = text.partition("=")
    genotype, colon, weights = rest.partition(":")
    name = name.strip()
    if not (eq and colon and name and genotype and weights):
        raise UserError(f"--model expects NAME=GENOTYPE:WEIGHTS, got {text!r}")
    if name in BASELINES or name == "clean":
        raise UserError(f"--model name {name!r} clashes with a baseline; pick another")
    return ModelSpec(name, Path(genotype), Path(weights))


#: ``refs``: the identity prior from the person's other clean photos (the paper's NASFE);
#: ``none``: the network's learned neutral embedding (the paper's "NASFE w/o Iiden");
#: ``both``: one column each.
IDENTITY_MODES: tuple[str, ...] = ("refs", "none", "both")


def model_methods(
    spec: ModelSpec, batch_size: int = 8, identity: str = "refs", device: str = "cpu"
) -> list[Method]:
    """Load a derived NASFE network (batch norms folded, fp32, on ``device``) as one or two columns.

    The degradation prior comes from the network's own classifier (``prior=None``). With
    ``identity="both"`` the second column is named ``<name> w/o Iiden``.
    """
    import torch

    from engine.build import load_fused

    if identity not in IDENTITY_MODES:
        raise ValueError(f"identity: expected one of {IDENTITY_MODES}, got {identity!r}")
    net = load_fused(spec.genotype, spec.weights, fuse=True).to(device)

    def make(use_identity: bool) -> RestoreFn:
        @torch.inference_mode()
        def restore(crops: np.ndarray, hints: Sequence[Hints]) -> list[np.ndarray | None]:
            out: list[np.ndarray | None] = []
            for i in range(0, len(crops), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(crops[i:i + batch_size])).to(device)
                priors = [h.identity for h in hints[i:i + batch_size]]
                kwargs = {}
                if use_identity and any(p is not None for p in priors):
                    shape = next(p for p in priors if p is not None).shape
                    zeros = np.zeros(shape, np.float32)
                    kwargs = {
                        "identity": torch.from_numpy(np.stack([zeros if p is None else p for p in priors])
                                                     .astype(np.float32)).to(device),
                        "has_identity": torch.tensor([p is not None for p in priors], dtype=torch.float32,
                                                     device=device),
                    }
                y = net(x.permute(0, 3, 1, 2).float() / 255.0, **kwargs).clamp(0.0, 1.0)
                out.extend((y * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
            return out

        return restore

    with_refs = Method(spec.name, spec.name, "model", make(True), uses_identity=True)
    without = Method(spec.name if identity == "none" else f"{spec.name} w/o Iiden",
                     spec.name if identity == "none" else f"{spec.name} w/o Iiden", "model", make(False))
    return {"refs": [with_refs], "none": [without], "both": [with_refs, without]}[identity]
