"""Export a derived NASFE network to ONNX (dynamo exporter) and check it in onnxruntime.

The graph has explicit optional inputs instead of Python ``None``s (one graph serves every case)::

    inputs:  image        (N, 3, S, S) float32 RGB in [0, 1]
             prior        (N, 3)       float32 degradation probabilities (blur, noise, low light)
             has_prior    (N,)         float32 1 = use ``prior``, 0 = use the built-in classifier
             identity     (N, 128, h, h) float32 identity prior (mean of instance-normalised
                                       reference features); any values when ``has_identity`` is 0
             has_identity (N,)         float32 1 = use ``identity``, 0 = learned neutral embedding
    outputs: restored     (N, 3, S, S) float32 RGB, not clamped
             probabilities (N, 3)      float32 classifier output (whatever ``has_prior`` says)

``N`` is dynamic; ``S`` and ``h`` are fixed at export (the config's crop and identity sizes). The
network is exported in its fused form (batch norms folded). The FFT operator's transform is written
as matrix products (:mod:`engine.ops.dft`), so the graph holds no DFT/FFT node; TensorRT users
should keep the nodes under ``fft_op`` modules in FP32 (the torch module does so by itself).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from engine.blocks import NASFEShell
from engine.errors import UserError

__all__ = [
    "ExportableNASFE",
    "example_export_inputs",
    "export_onnx",
    "ExportReport",
    "verify_onnx",
    "onnx_op_types",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "FORBIDDEN_OPS",
]

INPUT_NAMES: tuple[str, ...] = ("image", "prior", "has_prior", "identity", "has_identity")
OUTPUT_NAMES: tuple[str, ...] = ("restored", "probabilities")
#: ONNX operators the exported graph must not contain (no FFT in TensorRT).
FORBIDDEN_OPS: frozenset[str] = frozenset({"DFT", "STFT", "FFT", "IFFT", "RFFT", "IRFFT"})


class ExportableNASFE(nn.Module):
    """Wraps a network so every optional input is an explicit tensor plus a per-sample flag."""

    def __init__(self, net: NASFEShell) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, image: Tensor, prior: Tensor, has_prior: Tensor, identity: Tensor, has_identity: Tensor
    ) -> tuple[Tensor, Tensor]:
        probabilities = self.net.classify(image)
        use = has_prior.to(image.dtype).reshape(-1, 1)
        chosen = use * prior + (1.0 - use) * probabilities
        restored = self.net(image, chosen, identity, has_identity=has_identity)
        return restored, probabilities


def example_export_inputs(net: NASFEShell, batch: int = 1, seed: int = 0) -> tuple[Tensor, ...]:
    """Random inputs in :data:`INPUT_NAMES` order, with mixed flags when ``batch > 1``."""
    cfg = net.config
    g = torch.Generator().manual_seed(seed)
    s, h = cfg.crop_size, cfg.id_size
    flags = (torch.arange(batch) % 2 == 0).float() if batch > 1 else torch.ones(batch)
    return (
        torch.rand(batch, 3, s, s, generator=g),
        torch.rand(batch, 3, generator=g),
        flags,
        torch.randn(batch, cfg.id_channels, h, h, generator=g),
        1.0 - flags if batch > 1 else torch.ones(batch),
    )


def onnx_op_types(path: str | Path) -> set[str]:
    """Every operator type in an ONNX file (main graph, subgraphs and local functions)."""
    import onnx

    model = onnx.load(str(path))
    types: set[str] = set()

    def walk(graph: "onnx.GraphProto") -> None:
        for node in graph.node:
            types.add(node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(model.graph)
    for fn in model.functions:
        for node in fn.node:
            types.add(node.op_type)
    return types


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how well onnxruntime reproduces PyTorch."""

    path: Path
    max_abs_diff: float
    op_types: tuple[str, ...]


def verify_onnx(wrapper: ExportableNASFE, path: str | Path, inputs: tuple[Tensor, ...]) -> float:
    """Largest absolute difference between PyTorch and onnxruntime (CPU) over both outputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(INPUT_NAMES, inputs)}
    got = session.run(list(OUTPUT_NAMES), feeds)
    with torch.no_grad():
        want = wrapper(*inputs)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))


def export_onnx(
    net: NASFEShell,
    path: str | Path,
    *,
    opset: int = 18,
    verify: bool = True,
    tolerance: float = 1e-4,
) -> ExportReport:
    """Export ``net`` (a copy is fused and put in eval mode; ``net`` itself is untouched) to ONNX.

    Uses ``torch.onnx.export(..., dynamo=True)`` with a dynamic batch dimension, then checks that the
    graph has no DFT/FFT node and (``verify``) that onnxruntime matches PyTorch within
    ``tolerance`` on a batch of 2 with mixed flags.

    Raises:
        UserError: the output path cannot be written, the graph holds a forbidden operator, or
            onnxruntime disagrees with PyTorch.
    """
    out = Path(path)
    if not out.parent.is_dir():
        raise UserError(f"output folder does not exist: {out.parent}")
    model = copy.deepcopy(net).cpu().float().eval()
    model.fuse()
    wrapper = ExportableNASFE(model).eval()
    batch = torch.export.Dim("batch", min=1, max=256)
    dynamic = {name: {0: batch} for name in INPUT_NAMES}
    inputs = example_export_inputs(model, batch=2)
    with torch.no_grad():
        wrapper(*inputs)  # eager pass first: caches the DFT matrices so the trace embeds constants
    program = torch.onnx.export(
        wrapper,
        inputs,
        dynamo=True,
        opset_version=opset,
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes=dynamic,
        optimize=True,
        verbose=False,
    )
    program.model.metadata_props.update(
        {
            "nasfe.config": model.config.name,
            "nasfe.crop_size": str(model.config.crop_size),
            "nasfe.id_size": str(model.config.id_size),
            "nasfe.id_channels": str(model.config.id_channels),
            "nasfe.genotype": getattr(model, "genotype").to_json() if hasattr(model, "genotype") else "",
        }
    )
    program.save(str(out))
    types = onnx_op_types(out)
    bad = sorted(types & FORBIDDEN_OPS)
    if bad:
        raise UserError(f"exported graph {out} contains {bad}, which TensorRT cannot run")
    diff = verify_onnx(wrapper, out, inputs) if verify else float("nan")
    if verify and not diff <= tolerance:
        raise UserError(f"onnxruntime output of {out} differs from PyTorch by {diff:.3g} (> {tolerance:g})")
    return ExportReport(out, diff, tuple(sorted(types)))
