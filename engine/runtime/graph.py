"""The network behind one fixed signature, for the backends that compile or capture a graph.

``NASFENet.forward(x, prior=None, identity=None)`` branches on ``None``; a compiled graph cannot.
The network engineer's export wrapper (:class:`engine.export.ExportableNASFE`, also what the ONNX
file holds) takes every optional input as a tensor plus a per-sample 0/1 flag::

    image (N, 3, S, S) float32 RGB [0, 1]; prior (N, 3); has_prior (N,);
    identity (N, C, h, h); has_identity (N,)  ->  restored (N, 3, S, S), probabilities (N, 3)

``has_prior = 0`` takes the built-in classifier's estimate, ``has_identity = 0`` the learned neutral
embedding, so with flags in {0, 1} it computes exactly what ``net(x, prior or None, identity or
None)`` computes; the classifier and the identity branch always run (about 2 % of the rt network's
FLOPs). :class:`InferenceGraph` is that wrapper with only the restored image as output and a choice
of compute precision, which every backend runs (the ONNX backends through the exported file).

Precision: ``InferenceGraph(net, torch.float16)`` runs a half-precision copy of the network with
float32 inputs and output. The Wiener step of ``fft_op`` casts to float32 itself
(:func:`engine.ops.dft.wiener_deconvolution`: its unnormalised DFT overflows float16), so the traced
graph carries explicit float32 casts around it; TensorRT's strongly typed mode
(``use_explicit_typing``) keeps exactly those types.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from engine.export import INPUT_NAMES, ExportableNASFE, example_export_inputs
from engine.fused import NASFENet

__all__ = ["INPUT_NAMES", "GRAPH_VERSION", "InferenceGraph", "example_graph_inputs"]

#: Part of every cache key: bump it when :class:`InferenceGraph` or the export computes otherwise.
GRAPH_VERSION = "2"


class InferenceGraph(nn.Module):
    """:class:`engine.export.ExportableNASFE` returning only ``restored``, in a chosen precision.

    Args:
        net: the fused network (eval mode); it is copied, never modified.
        dtype: compute precision, ``torch.float32`` or ``torch.float16`` (inputs and output stay
            float32 either way).
    """

    def __init__(self, net: NASFENet, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float16):
            raise ValueError(f"dtype must be float32 or float16, got {dtype}")
        self.wrapped = ExportableNASFE(copy.deepcopy(net).eval().to(dtype))
        self.compute_dtype = dtype

    def forward(self, image: Tensor, prior: Tensor, has_prior: Tensor, identity: Tensor, has_identity: Tensor) -> Tensor:
        """Inputs as :data:`INPUT_NAMES` (float32); returns ``(N, 3, S, S)`` float32, not clamped."""
        d = self.compute_dtype
        restored, _ = self.wrapped(image.to(d), prior.to(d), has_prior.to(d), identity.to(d), has_identity.to(d))
        return restored.float()


def example_graph_inputs(net: NASFENet, batch: int, device: str | torch.device = "cpu") -> tuple[Tensor, ...]:
    """Random float32 inputs of the graph signature for ``batch`` crops (tracing and compiling)."""
    return tuple(t.to(device) for t in example_export_inputs(net, batch))
