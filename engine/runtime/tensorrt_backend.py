"""``tensorrt`` backend: the network compiled by Torch-TensorRT (dynamo path), float16, cached.

Build (first start only, per weights and GPU): :class:`~engine.runtime.graph.InferenceGraph` in
float16 (``InferenceGraph(net, torch.float16)``; the Wiener step of ``fft_op`` casts itself to
float32) is compiled with ``torch_tensorrt.compile(graph, ir="dynamo", inputs=[...],
use_explicit_typing=True, min_block_size=1)`` for each batch bucket (static shapes: 1 crop, and 4
crops for 2-4 faces, padded) and saved with ``torch_tensorrt.save(..., output_format=
"exported_program")``. Later starts ``torch.export.load`` the engines from the user's cache
(``<cache>/tensorrt/``), keyed by the weights digest, GPU name and compute capability, and the
TensorRT, Torch-TensorRT and torch versions.

Precision, and why not ``enabled_precisions={torch.float16}``: that asks TensorRT to pick float16
kernels wherever it likes ("weak typing"), which TensorRT 10 deprecates and which would also put the
DFT matmuls of the Wiener step in float16, where the squared DC term overflows. Strong typing
(``use_explicit_typing=True``, the default in recent Torch-TensorRT) instead keeps the types the
graph states: float16 everywhere except the explicit float32 region of the FFT operator. TensorRT
may run those float32 matmuls as TF32 (range of float32, which is what the step needs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from engine.fused import NASFENet
from engine.runtime.base import CropEnhancer, GraphInputs, NonFiniteOutputError
from engine.runtime.cache import ArtifactCache, network_digest
from engine.runtime.graph import GRAPH_VERSION, INPUT_NAMES, InferenceGraph, example_graph_inputs
from engine.runtime.torch_backend import DEFAULT_BUCKETS, to_uint8_nhwc_tensor

__all__ = ["TensorRTEnhancer", "describe_gpu", "tensorrt_cache_key", "compile_engine", "load_engine"]


def _module_version(module: str) -> str:
    """``module.__version__``, or ``"none"`` when it is not installed."""
    try:
        return str(importlib.import_module(module).__version__)
    except ImportError:
        return "none"


def describe_gpu(device: torch.device) -> dict[str, str]:
    """The GPU part of the cache key: name and compute capability of ``device``."""
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


def tensorrt_cache_key(net: NASFENet, batch: int, gpu: Mapping[str, str]) -> dict[str, str]:
    """Everything a serialized engine depends on (a change in any of them means a rebuild).

    ``gpu`` is :func:`describe_gpu` of the device the engine is for.
    """
    return {
        "artifact": "tensorrt-exported-program",
        "graph": GRAPH_VERSION,
        "network": network_digest(net),
        "batch": str(batch),
        "precision": "fp16",
        **gpu,
        "tensorrt": _module_version("tensorrt"),
        "torch_tensorrt": _module_version("torch_tensorrt"),
        "torch": torch.__version__,
    }


def compile_engine(net: NASFENet, batch: int, device: torch.device, path: Path) -> None:
    """Compile the float16 graph of ``net`` for ``batch`` crops and save it to ``path``."""
    import torch_tensorrt

    graph = InferenceGraph(net, torch.float16).to(device).eval()
    example = example_graph_inputs(net, batch, device)
    inputs = [torch_tensorrt.Input(shape=tuple(t.shape), dtype=torch.float32) for t in example]
    with torch.no_grad():
        compiled = torch_tensorrt.compile(
            graph,
            ir="dynamo",
            inputs=inputs,
            use_explicit_typing=True,
            min_block_size=1,
        )
        torch_tensorrt.save(compiled, str(path), output_format="exported_program", arg_inputs=list(example))


def load_engine(path: Path) -> torch.nn.Module:
    """A saved engine as a callable module (importing torch_tensorrt registers its runtime ops)."""
    import torch_tensorrt  # noqa: F401

    return torch.export.load(str(path)).module()


class TensorRTEnhancer(CropEnhancer):
    """The network as TensorRT engines, one per batch bucket.

    Args:
        net: the fused network.
        cache_dir: the user's cache folder; engines live in ``cache_dir / "tensorrt"``.
        device: the CUDA device.
        buckets: batch sizes to build engines for (a call of n crops runs the smallest >= n).
        gpu: the GPU part of the cache key; default :func:`describe_gpu` of ``device``.
        compile_fn: ``(net, batch, device, path) -> None`` building one engine file (tests inject
            a fake one to check the caching without TensorRT).
        load_fn: ``(path) -> callable`` loading one engine file.

    Attributes:
        cache_hits: ``{bucket: True if its engine came from the cache, False if it was built}``.
    """

    def __init__(
        self,
        net: NASFENet,
        *,
        cache_dir: str | Path,
        device: str | torch.device = "cuda",
        buckets: tuple[int, ...] = DEFAULT_BUCKETS,
        gpu: Mapping[str, str] | None = None,
        compile_fn: Callable[[NASFENet, int, torch.device, Path], None] = compile_engine,
        load_fn: Callable[[Path], Callable[..., torch.Tensor]] = load_engine,
    ) -> None:
        self.device = torch.device(device)
        gpu = dict(gpu) if gpu is not None else describe_gpu(self.device)
        self.buckets = tuple(sorted(set(buckets)))
        super().__init__(net.config, "tensorrt-fp16", max_batch=self.buckets[-1])
        cache = ArtifactCache(cache_dir, "tensorrt", ".pt2")
        self.engines: dict[int, Callable[..., torch.Tensor]] = {}
        self.cache_hits: dict[int, bool] = {}
        for b in self.buckets:
            self.engines[b], self.cache_hits[b] = cache.get_or_build(
                tensorrt_cache_key(net, b, gpu),
                lambda p, b=b: compile_fn(net, b, self.device, p),
                load_fn,
            )

    def _run(self, inputs: GraphInputs) -> np.ndarray:
        n = len(inputs)
        bucket = next(b for b in self.buckets if b >= n)
        arrays = inputs.padded(bucket).arrays()
        tensors = [torch.from_numpy(arrays[name]).to(self.device) for name in INPUT_NAMES]
        with torch.no_grad():
            y = self.engines[bucket](*tensors)[:n]
        out, finite = to_uint8_nhwc_tensor(y)
        if not bool(finite.all()):
            raise NonFiniteOutputError("engine output contains NaN or inf")
        return np.ascontiguousarray(out.cpu().numpy())
