"""Engine timing and a description of the machine, for ``nasfe-cam bench`` and the GPU check.

Only the engine is timed here (no camera, no detector): :func:`time_engine` calls
:meth:`~engine.enhancer.Enhancer.enhance` on fixed random crops, which includes the uint8 <-> float
conversions and, for GPU backends, the host <-> device copies (``enhance`` returns host memory, so
every timed call is complete when it returns).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from engine.enhancer import Enhancer

__all__ = ["EngineTiming", "time_engine", "machine_info", "sample_crops"]

#: Distributions whose versions :func:`machine_info` reports (absent ones as ``None``).
_DISTRIBUTIONS = ("torch", "numpy", "onnxruntime", "openvino", "torch-tensorrt", "tensorrt", "opencv-contrib-python")


def sample_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 RGB crops: smooth random colour fields with fine noise.

    Timing does not depend on the content for these networks; smooth crops keep the output in a
    realistic range (no overflow paths) and make the data reproducible from ``seed``.
    """
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 3, 8, 8), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    noisy = smooth.numpy() + rng.normal(0.0, 0.03, (n, 3, size, size)).astype(np.float32)
    return np.ascontiguousarray((np.clip(noisy, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1))


@dataclass(frozen=True)
class EngineTiming:
    """Wall-clock latency of one backend at one batch size (milliseconds)."""

    backend: str
    batch: int
    runs: int
    median_ms_per_face: float
    p95_ms_per_face: float
    median_ms_per_call: float

    def to_dict(self) -> dict:
        return asdict(self)


def time_engine(enhancer: Enhancer, batch: int, *, runs: int = 50, warmup: int = 5, seed: int = 0) -> EngineTiming:
    """Time ``runs`` calls of ``enhancer.enhance`` on ``batch`` crops after ``warmup`` untimed calls.

    Per-face numbers are the per-call numbers divided by ``batch``. The classifier estimates the
    prior (``prior=None``, the ``auto`` mode) and nobody is enrolled (``identity=None``).
    """
    if batch < 1 or runs < 1 or warmup < 0:
        raise ValueError(f"need batch >= 1, runs >= 1, warmup >= 0; got {batch}, {runs}, {warmup}")
    crops = sample_crops(batch, enhancer.crop_size, seed)
    for _ in range(warmup):
        enhancer.enhance(crops)
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        enhancer.enhance(crops)
        times[i] = (time.perf_counter() - t0) * 1e3
    return EngineTiming(
        backend=enhancer.name,
        batch=batch,
        runs=runs,
        median_ms_per_face=round(float(np.median(times)) / batch, 3),
        p95_ms_per_face=round(float(np.percentile(times, 95)) / batch, 3),
        median_ms_per_call=round(float(np.median(times)), 3),
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU model and cores, load, OS, Python, library versions and the GPU (if torch sees one).

    The load average matters on a shared machine: timings taken under load are not comparable.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {dist: _version(dist) for dist in _DISTRIBUTIONS},
        "gpu": None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
        }
    return info
