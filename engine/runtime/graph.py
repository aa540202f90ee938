"""The network behind one fixed signature, for the backends that compile or export a graph.

``NASFENet.forward(x, prior=None, identity=None)`` branches on ``None``; a compiled graph cannot.
:class:`InferenceGraph` always takes all five inputs and selects with 0/1 masks instead::

    restored = graph(x, prior, use_prior, identity, has_identity)
    x (N, 3, S, S) float32 RGB [0, 1]; prior (N, 3); use_prior (N,) in {0, 1};
    identity (1, C, h, w) shared by the batch; has_identity (N,) in {0, 1}  ->  (N, 3, S, S) float32

``use_prior = 0`` takes the built-in classifier's estimate, ``has_identity = 0`` the learned neutral
embedding (the network's own ``has_identity`` input), so with masks in {0, 1} the graph computes
exactly what ``net(x, prior or None, identity or None)`` computes. The classifier always runs (about
8 MFLOPs of the rt network's 1.07 GFLOPs) and so does the identity branch (about as much).

Precision: ``InferenceGraph(net, torch.float16)`` runs a half-precision copy of the network with
float32 inputs and output. The Wiener step of ``fft_op`` casts to float32 itself
(:func:`engine.ops.dft.wiener_deconvolution`: its unnormalised DFT overflows float16), so the
exported graph carries explicit float32 casts around it; TensorRT's strongly typed mode
(``use_explicit_typing``) keeps exactly those types.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from engine.fused import NASFENet

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "GRAPH_VERSION", "InferenceGraph", "example_graph_inputs", "export_onnx_graph"]

#: Graph input names, in call order.
INPUT_NAMES: tuple[str, ...] = ("x", "prior", "use_prior", "identity", "has_identity")
#: Graph output name.
OUTPUT_NAMES: tuple[str, ...] = ("restored",)
#: Part of every cache key: bump it when :class:`InferenceGraph` computes something else.
GRAPH_VERSION = "1"
#: Largest batch an exported ONNX graph accepts (its dynamic batch dimension's bound).
ONNX_MAX_BATCH = 64


class InferenceGraph(nn.Module):
    """``NASFENet`` with the fixed five-input signature of the module docstring.

    Args:
        net: the fused network (eval mode); it is copied, never modified.
        dtype: compute precision, ``torch.float32`` or ``torch.float16`` (inputs and output stay
            float32 either way).
    """

    def __init__(self, net: NASFENet, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float16):
            raise ValueError(f"dtype must be float32 or float16, got {dtype}")
        self.net = copy.deepcopy(net).eval().to(dtype)
        self.compute_dtype = dtype

    def forward(self, x: Tensor, prior: Tensor, use_prior: Tensor, identity: Tensor, has_identity: Tensor) -> Tensor:
        dtype = self.compute_dtype
        x = x.to(dtype)
        m = use_prior.to(dtype).unsqueeze(1)
        prior = m * prior.to(dtype) + (1.0 - m) * self.net.classify(x)
        restored = self.net(x, prior, identity.to(dtype), has_identity=has_identity.to(dtype))
        return restored.float()


def example_graph_inputs(net: NASFENet, batch: int, device: str | torch.device = "cpu") -> tuple[Tensor, ...]:
    """Random float32 inputs of the graph signature for ``batch`` crops (tracing and capture)."""
    cfg = net.config
    g = torch.Generator().manual_seed(0)
    s, c, h = cfg.crop_size, cfg.id_channels, cfg.id_size
    args = (
        torch.rand(batch, 3, s, s, generator=g),
        torch.rand(batch, 3, generator=g),
        torch.ones(batch),
        torch.randn(1, c, h, h, generator=g),
        torch.ones(batch),
    )
    return tuple(a.to(device) for a in args)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (progress logs, deprecation and torchvision warnings), which
    says nothing to someone starting the camera; errors still raise."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx_graph(net: NASFENet, path: str | Path) -> None:
    """Write the float32 :class:`InferenceGraph` of ``net`` as one ONNX file with a dynamic batch.

    Uses the ``torch.export``-based exporter (``dynamo=True``); all weights are inside the file.
    """
    graph = InferenceGraph(net).to("cpu").eval()
    batch = torch.export.Dim("batch", min=1, max=ONNX_MAX_BATCH)
    dynamic = {"x": {0: batch}, "prior": {0: batch}, "use_prior": {0: batch}, "identity": None, "has_identity": {0: batch}}
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            graph,
            example_graph_inputs(net, batch=2),
            str(path),
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic,
            external_data=False,
            optimize=True,
            verbose=False,
        )
