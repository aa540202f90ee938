"""Plain PyTorch backends: ``torch`` (CPU, float32, eager) and ``cuda`` (float16, CUDA graphs).

``cuda`` is the NVIDIA fallback when TensorRT is missing: the network runs under float16 autocast
(the Wiener step of ``fft_op`` switches autocast off and stays float32, see
:func:`engine.ops.dft.wiener_deconvolution`), in channels-last layout, and each batch bucket
(1 and 4 crops by default; 2-3 crops run padded to 4) is captured once as a CUDA graph, so a call
is a few copies and one graph replay instead of hundreds of kernel launches. The uint8 <-> float
conversions run on the device inside the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from engine.fused import NASFENet
from engine.runtime.base import CropEnhancer, GraphInputs, NonFiniteOutputError
from engine.runtime.graph import InferenceGraph

__all__ = ["TorchEnhancer", "DEFAULT_BUCKETS", "to_uint8_nhwc_tensor"]

#: Batch sizes captured as CUDA graphs (a call of n crops uses the smallest bucket >= n).
DEFAULT_BUCKETS: tuple[int, ...] = (1, 4)


def to_uint8_nhwc_tensor(restored: Tensor) -> tuple[Tensor, Tensor]:
    """``(N, 3, S, S)`` float RGB, nominally [0, 1] -> ``(N, S, S, 3)`` uint8 (clipped, rounded half
    to even like :func:`engine.runtime.base.to_uint8_nhwc`), on the same device, plus an ``(N,)``
    bool that is False where a crop held NaN or inf (checked on the host, after a CUDA graph)."""
    restored = restored.float()
    finite = torch.isfinite(restored).flatten(1).all(dim=1)
    return restored.mul(255.0).clamp_(0.0, 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1), finite


class _Captured:
    """One CUDA graph of the whole uint8-in/uint8-out computation for a fixed batch size."""

    def __init__(self, run: Callable[[dict[str, Tensor]], tuple[Tensor, Tensor]], static: dict[str, Tensor]) -> None:
        self.static = static
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph: cuDNN picks its algorithms here
            for _ in range(3):
                run(static)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = run(static)

    def __call__(self, tensors: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Run on ``tensors`` (any device, at most the captured batch); returns the first n outputs."""
        n = len(tensors["crops"])
        for name, value in tensors.items():
            self.static[name][: len(value)].copy_(value)
        self.graph.replay()
        return self.output[0][:n], self.output[1][:n]


class TorchEnhancer(CropEnhancer):
    """The network in PyTorch on ``device``.

    Args:
        net: the fused network (copied; the original is left alone).
        device: ``"cpu"`` or a CUDA device.
        precision: ``"fp32"``, or ``"fp16"`` for float16 autocast (the FFT step stays float32).
        threads: CPU threads for torch (``torch.set_num_threads``, process-wide); ``None`` leaves
            torch's setting alone.
        channels_last: run convolutions in NHWC memory layout.
        cuda_graphs: capture one CUDA graph per batch bucket (CUDA only).
        buckets: batch sizes to capture; the largest is also the biggest batch per call.
    """

    def __init__(
        self,
        net: NASFENet,
        *,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
        channels_last: bool = False,
        cuda_graphs: bool = False,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
    ) -> None:
        self.device = torch.device(device)
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {self.device}")
        self.buckets = tuple(sorted(set(int(b) for b in buckets)))
        if not self.buckets or self.buckets[0] < 1:
            raise ValueError(f"buckets must be positive batch sizes, got {tuple(buckets)}")
        kind = "cpu" if self.device.type == "cpu" else self.device.type
        super().__init__(net.config, f"torch-{kind}-{precision}", max_batch=self.buckets[-1])
        if threads is not None:
            torch.set_num_threads(threads)
        self.precision = precision
        self.channels_last = channels_last
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN time its algorithms once
        graph = InferenceGraph(net).to(self.device).eval()
        self.graph = graph.to(memory_format=torch.channels_last) if channels_last else graph
        self._captured: dict[int, _Captured] = {}
        if cuda_graphs:
            with torch.no_grad():
                for b in self.buckets:
                    self._captured[b] = _Captured(self._compute, self._zeros(b))

    def _zeros(self, batch: int) -> dict[str, Tensor]:
        cfg, s, dev = self.config, self.crop_size, self.device
        return {
            "crops": torch.zeros(batch, s, s, 3, dtype=torch.uint8, device=dev),
            "prior": torch.zeros(batch, 3, device=dev),
            "has_prior": torch.zeros(batch, device=dev),
            "identity": torch.zeros(batch, cfg.id_channels, cfg.id_size, cfg.id_size, device=dev),
            "has_identity": torch.zeros(batch, device=dev),
        }

    def _compute(self, t: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """uint8 NHWC crops + masks on the device -> uint8 NHWC restored crops and finite flags."""
        x = t["crops"].permute(0, 3, 1, 2).float().mul_(1.0 / 255.0)
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        # No autocast weight cache: cached casts made during CUDA graph capture would be stale.
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.precision == "fp16", cache_enabled=False):
            y = self.graph(x, t["prior"], t["has_prior"], t["identity"], t["has_identity"])
        return to_uint8_nhwc_tensor(y)

    def _run(self, inputs: GraphInputs) -> np.ndarray:
        tensors = {
            # torch refuses to wrap read-only arrays silently; np.require copies only those
            name: torch.from_numpy(np.require(getattr(inputs, name), requirements="W"))
            for name in ("crops", "prior", "has_prior", "identity", "has_identity")
        }
        with torch.no_grad():
            if self._captured:  # host tensors are copied straight into the graph's static inputs
                bucket = next(b for b in self.buckets if b >= len(inputs))
                out, finite = self._captured[bucket](tensors)
            else:
                out, finite = self._compute({k: v.to(self.device) for k, v in tensors.items()})
            if not bool(finite.all()):
                raise NonFiniteOutputError("engine output contains NaN or inf")
            return np.ascontiguousarray(out.cpu().numpy())
