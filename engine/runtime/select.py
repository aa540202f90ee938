"""Backend registry and selection: which backends exist, which work here, which one ``auto`` takes.

Preference order (``auto`` takes the first that is usable and starts): ``tensorrt`` (NVIDIA GPU with
Torch-TensorRT) > ``cuda`` (NVIDIA GPU, plain torch) > ``openvino`` (CPU, optional extra; fastest
measured on the CPU, bfloat16 where the CPU has it) > ``onnxruntime`` (CPU, float32; 2x faster than
torch eager on the rt network) > ``torch`` (CPU, always there). Numbers: README "Runtimes and
benchmarks". ``auto`` reports
its choice in one log line on the ``engine.runtime`` logger; a backend that is usable on paper but
fails to start under ``auto`` is skipped with a warning. Asking for a backend by name never falls
back: a missing one is a :class:`~engine.errors.UserError` that names what to install.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.enhancer import Enhancer
from engine.errors import UserError
from engine.fused import NASFENet
from engine.runtime.paths import user_cache_dir

__all__ = ["Backend", "RuntimeOptions", "BACKENDS", "AUTO_ORDER", "backend_status", "create_enhancer", "default_threads"]

log = logging.getLogger("engine.runtime")


def default_threads() -> int:
    """CPU threads for the engine: half the cores this process may use, at least one.

    The filter shares the laptop with the video-call app, which encodes video on the CPU too; taking
    every core makes both stutter, and the engine gains little from its second half of the cores.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, usable // 2)


@dataclass(frozen=True)
class RuntimeOptions:
    """Settings every backend factory receives."""

    threads: int
    cache_dir: Path


@dataclass(frozen=True)
class Backend:
    """One inference backend.

    Attributes:
        name: what ``--backend`` takes.
        summary: one line for ``--help`` and docs.
        missing: ``None`` when the backend can run here, else why not and what to install (one line).
        create: builds the enhancer for a fused network.
    """

    name: str
    summary: str
    missing: Callable[[], str | None]
    create: Callable[[NASFENet, RuntimeOptions], Enhancer]


def _has_modules(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _no_gpu(name: str) -> str | None:
    if torch.cuda.is_available():
        return None
    return f"backend {name!r} needs an NVIDIA GPU with a CUDA build of torch; torch {torch.__version__} sees no GPU"


def _missing_tensorrt() -> str | None:
    if not _has_modules("torch_tensorrt"):
        return "backend 'tensorrt' needs torch-tensorrt: pip install 'nasfe-cam[tensorrt]'"
    return _no_gpu("tensorrt")


def _missing_onnxruntime() -> str | None:
    if not _has_modules("onnxruntime", "onnx", "onnxscript"):
        return "backend 'onnxruntime' needs onnxruntime and the ONNX exporter: pip install 'nasfe-cam[onnx]'"
    return None


def _missing_openvino() -> str | None:
    if not _has_modules("openvino", "onnx", "onnxscript"):
        return "backend 'openvino' needs OpenVINO and the ONNX exporter: pip install 'nasfe-cam[openvino]'"
    return None


def _create_tensorrt(net: NASFENet, options: RuntimeOptions) -> Enhancer:
    from engine.runtime.tensorrt_backend import TensorRTEnhancer

    return TensorRTEnhancer(net, cache_dir=options.cache_dir)


def _create_cuda(net: NASFENet, options: RuntimeOptions) -> Enhancer:
    from engine.runtime.torch_backend import TorchEnhancer

    return TorchEnhancer(net, device="cuda", precision="fp16", channels_last=True, cuda_graphs=True)


def _create_onnxruntime(net: NASFENet, options: RuntimeOptions) -> Enhancer:
    from engine.runtime.onnx_backend import OnnxRuntimeEnhancer

    return OnnxRuntimeEnhancer(net, threads=options.threads, cache_dir=options.cache_dir)


def _create_openvino(net: NASFENet, options: RuntimeOptions) -> Enhancer:
    from engine.runtime.openvino_backend import OpenVinoEnhancer

    return OpenVinoEnhancer(net, threads=options.threads, cache_dir=options.cache_dir)


def _create_torch(net: NASFENet, options: RuntimeOptions) -> Enhancer:
    from engine.runtime.torch_backend import TorchEnhancer

    return TorchEnhancer(net, device="cpu", threads=options.threads, channels_last=True)


#: Every backend, by name, in ``auto``'s order of preference.
BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("tensorrt", "NVIDIA GPU, Torch-TensorRT engine, float16 (needs the tensorrt extra)", _missing_tensorrt, _create_tensorrt),
        Backend("cuda", "NVIDIA GPU, plain torch, float16 autocast + CUDA graphs", lambda: _no_gpu("cuda"), _create_cuda),
        Backend("openvino", "CPU, OpenVINO on the exported graph, bfloat16 where the CPU has it (needs the openvino extra)", _missing_openvino, _create_openvino),
        Backend("onnxruntime", "CPU, onnxruntime session on the exported graph (needs the onnx extra)", _missing_onnxruntime, _create_onnxruntime),
        Backend("torch", "CPU, torch eager float32", lambda: None, _create_torch),
    )
}
#: Names ``auto`` tries, best first.
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "cuda", "openvino", "onnxruntime", "torch")


def backend_status() -> dict[str, str | None]:
    """``{name: None if usable here else why not}`` for every backend."""
    return {name: b.missing() for name, b in BACKENDS.items()}


def create_enhancer(
    net: NASFENet,
    backend: str = "auto",
    *,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
) -> Enhancer:
    """The enhancer for a fused network on ``backend`` (a name of :data:`BACKENDS` or ``"auto"``).

    Args:
        net: the fused network (eval mode).
        backend: ``"auto"`` picks the first usable backend of :data:`AUTO_ORDER`.
        threads: CPU threads (default :func:`default_threads`).
        cache_dir: where built artefacts go (default :func:`engine.runtime.paths.user_cache_dir`).

    Raises:
        UserError: unknown backend, a backend that cannot run here (names what to install), or a
            bad thread count.
    """
    if threads is None:
        threads = default_threads()
    elif threads < 1:
        raise UserError(f"threads must be >= 1, got {threads}")
    options = RuntimeOptions(threads, Path(cache_dir) if cache_dir is not None else user_cache_dir())
    if backend != "auto":
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}; choose auto or one of: {', '.join(BACKENDS)}")
        reason = BACKENDS[backend].missing()
        if reason is not None:
            raise UserError(reason)
        enhancer = BACKENDS[backend].create(net, options)
        log.info("engine: backend %s (asked for), %d CPU thread(s)", enhancer.name, threads)
        return enhancer
    skipped = []
    for name in AUTO_ORDER:
        reason = BACKENDS[name].missing()
        if reason is not None:
            skipped.append(f"{name}: {reason}")
            continue
        try:
            enhancer = BACKENDS[name].create(net, options)
        except (ImportError, RuntimeError, OSError) as exc:  # e.g. an engine build that failed
            log.warning("engine: backend %s failed to start (%s: %s); trying the next", name, type(exc).__name__, exc)
            skipped.append(f"{name}: failed to start")
            continue
        note = f"; skipped {' | '.join(skipped)}" if skipped else ""
        log.info("engine: backend %s (auto), %d CPU thread(s)%s", enhancer.name, threads, note)
        return enhancer
    raise UserError("no inference backend could start: " + " | ".join(skipped))
