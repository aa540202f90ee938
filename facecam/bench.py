"""Benchmarks of the engine backends and of the whole filter, and the memory soak test.

Everything here is measured on preloaded frames of the bundled sample clip, so decoding, the webcam
and the virtual camera are not in the numbers: :func:`time_pipeline` is what
:meth:`facecam.pipeline.FramePipeline.process` costs per frame (detection, tracking, alignment,
engine, exposure, paste), i.e. the latency the filter adds to each frame and the frame rate one
frame thread can sustain. The clip is played forwards then backwards (no jump for the tracker) as
often as needed. Frames are uint8 BGR; other sizes than the clip's 640x480 are made by scaling to
the target height and replicating the side columns (the clip is 4:3, 720p is 16:9), so the face
keeps its shape and grows with the resolution as it would with a 720p webcam.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from engine.enhancer import Enhancer
from engine.errors import UserError
from engine.fused import NASFENet
from facecam.capture import open_video
from facecam.pipeline import FramePipeline
from facecam.quiet import native_stderr_silenced

__all__ = [
    "SAMPLE_CLIP",
    "DEFAULT_SIZES",
    "parse_size",
    "load_clip",
    "fit_frame",
    "cycle_frames",
    "time_pipeline",
    "rss_mb",
    "release_free_heap",
    "soak",
    "plot_soak",
    "GOALS",
    "run_benchmark",
    "summary_lines",
]

SAMPLE_CLIP = Path(__file__).resolve().parent.parent / "assets" / "sample" / "webcam_sample.mkv"
#: Frame sizes (width, height) of the pipeline benchmark.
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720))


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``; a UserError for anything else."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"frame size must look like 1280x720, got {text!r}") from None
    if w < 32 or h < 32:
        raise UserError(f"frame size {w}x{h} is too small (at least 32x32)")
    return w, h


def load_clip(path: str | Path = SAMPLE_CLIP) -> list[np.ndarray]:
    """Every frame of a video file, uint8 BGR ``(H, W, 3)``."""
    cap = open_video(str(path))
    frames = []
    try:
        while cap.isOpened():
            with native_stderr_silenced():  # FFmpeg reports damaged files on fd 2
                ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise UserError(f"{path}: not a readable video")
    return frames


def fit_frame(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``frame_bgr`` (uint8 BGR) to the target height, then crop or replicate-pad the width
    to ``size = (width, height)``; the content keeps its aspect ratio."""
    w, h = size
    fh, fw = frame_bgr.shape[:2]
    scaled_w = max(1, round(fw * h / fh))
    scaled = cv2.resize(frame_bgr, (scaled_w, h), interpolation=cv2.INTER_AREA if h < fh else cv2.INTER_LINEAR)
    if scaled_w >= w:
        left = (scaled_w - w) // 2
        return np.ascontiguousarray(scaled[:, left : left + w])
    pad = w - scaled_w
    return cv2.copyMakeBorder(scaled, 0, 0, pad // 2, pad - pad // 2, cv2.BORDER_REPLICATE)


def cycle_frames(frames: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """``n`` frames played forwards then backwards, repeatedly (``0 1 2 .. k .. 2 1 0 1 ..``)."""
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1)) or [0]
    return [frames[order[i % len(order)]] for i in range(n)]


def time_pipeline(
    enhancer: Enhancer,
    frames: Sequence[np.ndarray],
    *,
    fps: float = 30.0,
    warmup: int = 5,
    pipeline_factory: Callable[[Enhancer], FramePipeline] = FramePipeline,
) -> dict:
    """Run the whole filter over ``frames`` (uint8 BGR, one size) and time every frame.

    The first ``warmup`` frames are processed but not timed (detector and engine start-up).

    Returns:
        ``{"frames", "fps", "latency_ms": {"p50", "p95", "max"}, "enhanced_frames", "mean_faces",
        "stages_ms": {stage: {"p50", "p95"}}}``; ``fps`` is timed frames over their total
        processing time, ``latency_ms`` the time :meth:`FramePipeline.process` took per frame.
    """
    if len(frames) <= warmup:
        raise ValueError(f"need more than {warmup} frames, got {len(frames)}")
    times, enhanced, faces = [], 0, 0
    with pipeline_factory(enhancer) as pipeline:
        for i, frame in enumerate(frames):
            t0 = time.perf_counter()
            result = pipeline.process(frame, i / fps)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt)
                enhanced += result.enhanced
                faces += len(result.faces)
        stages = pipeline.stats.snapshot()["latency_ms"]
    ms = np.asarray(times) * 1e3
    return {
        "frames": len(times),
        "fps": round(len(times) / float(np.sum(times)), 2),
        "latency_ms": {
            "p50": round(float(np.median(ms)), 2),
            "p95": round(float(np.percentile(ms, 95)), 2),
            "max": round(float(np.max(ms)), 2),
        },
        "enhanced_frames": int(enhanced),
        "mean_faces": round(faces / len(times), 3),
        "stages_ms": {k: v for k, v in stages.items() if k != "total"},
    }


def rss_mb() -> float:
    """Resident memory of this process in MB (current on Linux; peak elsewhere, the best there is)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if os.uname().sysname == "Darwin" else peak / 2**10


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``; nothing elsewhere).

    RSS then measures memory in use: pages freed earlier (by the benchmark before a soak, or by
    earlier tests) would otherwise absorb a leak, unseen, until they are used up.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def soak(
    enhancer: Enhancer,
    frames: Sequence[np.ndarray],
    minutes: float,
    *,
    samples: int = 30,
    fps: float = 30.0,
    pipeline_factory: Callable[[Enhancer], FramePipeline] = FramePipeline,
    on_sample: Callable[[dict], None] | None = None,
) -> dict:
    """Run the filter on ``frames`` (cycled) for ``minutes`` and follow memory and latency.

    Every ``minutes / samples`` it records the process's RSS and the frame latency since the last
    sample (after :func:`release_free_heap`, so that RSS is memory in use). The RSS slope (least
    squares over every sample but the first, which still includes start-up allocations) is what a
    leak shows up in: a healthy filter stays near 0 MB/min.

    Returns:
        ``{"minutes", "frames", "samples": [{"t_min", "frames", "rss_mb", "latency_p50_ms",
        "latency_p95_ms"}], "rss_start_mb", "rss_end_mb", "rss_slope_mb_per_min"}``.
    """
    if minutes <= 0 or samples < 3:
        raise ValueError(f"need minutes > 0 and samples >= 3, got {minutes}, {samples}")
    order = cycle_frames(frames, 2 * len(frames))
    interval = minutes * 60.0 / samples
    records: list[dict] = []
    window: list[float] = []
    total = 0
    with pipeline_factory(enhancer) as pipeline:
        start = next_sample = time.perf_counter()
        next_sample += interval
        while True:
            frame = order[total % len(order)]
            t0 = time.perf_counter()
            pipeline.process(frame, total / fps)
            now = time.perf_counter()
            window.append(now - t0)
            total += 1
            if now >= next_sample:
                release_free_heap()
                ms = np.asarray(window) * 1e3
                record = {
                    "t_min": round((now - start) / 60.0, 4),
                    "frames": total,
                    "rss_mb": round(rss_mb(), 2),
                    "latency_p50_ms": round(float(np.median(ms)), 2),
                    "latency_p95_ms": round(float(np.percentile(ms, 95)), 2),
                }
                records.append(record)
                if on_sample is not None:
                    on_sample(record)
                window.clear()
                next_sample += interval
                if len(records) >= samples:
                    break
    t = np.array([r["t_min"] for r in records[1:]])
    rss = np.array([r["rss_mb"] for r in records[1:]])
    slope = float(np.polyfit(t, rss, 1)[0]) if len(t) >= 2 and np.ptp(t) > 0 else 0.0
    return {
        "minutes": minutes,
        "frames": total,
        "samples": records,
        "rss_start_mb": records[0]["rss_mb"],
        "rss_end_mb": records[-1]["rss_mb"],
        "rss_slope_mb_per_min": round(slope, 3),
    }


def plot_soak(result: dict, path: str | Path) -> None:
    """PNG of a :func:`soak` result: RSS and frame latency (p50, p95) against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["samples"]
    t = [r["t_min"] for r in s]
    fig, (ax_mem, ax_lat) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    ax_mem.plot(t, [r["rss_mb"] for r in s], marker=".")
    ax_mem.set_ylabel("RSS (MB)")
    ax_mem.set_title(f"soak: {result['frames']} frames, RSS slope {result['rss_slope_mb_per_min']:+.2f} MB/min")
    ax_lat.plot(t, [r["latency_p50_ms"] for r in s], label="p50")
    ax_lat.plot(t, [r["latency_p95_ms"] for r in s], label="p95")
    ax_lat.set_ylabel("frame latency (ms)")
    ax_lat.set_xlabel("time (min)")
    ax_lat.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: The product's speed goals (reported beside the numbers; benchmarks, not pass/fail tests).
GOALS = {
    "cpu_engine_ms_per_face": 15.0,
    "cpu_pipeline_fps_1280x720_one_face": 30.0,
    "gpu_engine_ms_per_face": 1.0,
}


def run_benchmark(
    net: NASFENet,
    backends: Sequence[str],
    *,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    frames: int = 300,
    runs: int = 50,
    batches: Sequence[int] = (1, 4),
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    clip: str | Path = SAMPLE_CLIP,
    progress: bool = True,
) -> dict:
    """Benchmark each backend: engine latency per face at each batch size, then the whole filter.

    Args:
        net: the fused network to run.
        backends: backend names (or ``"auto"``), each created with
            :func:`engine.runtime.create_enhancer`.
        sizes: frame sizes ``(width, height)`` for the pipeline benchmark.
        frames: timed pipeline frames per size (0 skips the pipeline benchmark).
        runs: timed engine calls per batch size.
        batches: engine batch sizes.
        threads: CPU threads (default: the runtime's default, half the cores).
        cache_dir: the runtime's cache folder (default: the user's).
        clip: the video the pipeline runs on.
        progress: show a tqdm bar.

    Returns:
        ``{"machine", "network", "settings", "goals", "backends": {name: {"enhancer", "load_s",
        "engine": {"batch_B": EngineTiming dict}, "pipeline": {"WxH": time_pipeline dict}}}}``.
    """
    from tqdm import tqdm

    from engine.flops import count_params, network_flops
    from engine.runtime import create_enhancer, default_threads
    from engine.runtime.benchmark import machine_info, time_engine

    threads = threads or default_threads()
    by_size: dict[str, list[np.ndarray]] = {}
    if frames > 0:
        clip_frames = load_clip(clip)
        by_size = {f"{w}x{h}": cycle_frames([fit_frame(f, (w, h)) for f in clip_frames], frames + 5) for w, h in sizes}
    report: dict = {
        "machine": machine_info(),
        "network": {
            "config": net.config.name,
            "genotype": json.loads(net.genotype.to_json()),
            "gflops_per_face": round(network_flops(net, net.config) / 1e9, 3),
            "parameters": count_params(net, trainable_only=False),
        },
        "settings": {"frames": frames, "runs": runs, "batches": list(batches), "threads": threads,
                     "sizes": list(by_size), "clip": str(clip)},
        "goals": GOALS,
        "backends": {},
    }
    steps = len(backends) * (len(batches) + len(by_size))
    with tqdm(total=steps, desc="bench", unit="step", disable=not progress) as bar:
        for name in backends:
            bar.set_postfix_str(f"{name}: loading")
            t0 = time.perf_counter()
            enhancer = create_enhancer(net, name, threads=threads, cache_dir=cache_dir)
            entry: dict = {"enhancer": enhancer.name, "load_s": round(time.perf_counter() - t0, 2), "engine": {}, "pipeline": {}}
            for b in batches:
                bar.set_postfix_str(f"{name}: engine batch {b}")
                entry["engine"][f"batch_{b}"] = time_engine(enhancer, b, runs=runs).to_dict()
                bar.update()
            for size, size_frames in by_size.items():
                bar.set_postfix_str(f"{name}: pipeline {size}")
                entry["pipeline"][size] = time_pipeline(enhancer, size_frames)
                bar.update()
            report["backends"][name] = entry
    return report


def summary_lines(report: dict) -> list[str]:
    """A few human-readable lines of a :func:`run_benchmark` report (what ``nasfe-cam bench`` prints)."""
    m = report["machine"]
    gpu = f", GPU {m['gpu']['name']}" if m.get("gpu") else ""
    lines = [
        f"machine: {m['cpu']}, {m['usable_cores']} usable cores, load {m['load_average_1min']}{gpu}; "
        f"torch {m['versions']['torch']}, onnxruntime {m['versions']['onnxruntime']}, openvino {m['versions']['openvino']}",
        f"network: {report['network']['config']}, {report['network']['gflops_per_face']} GFLOPs per face, "
        f"{report['settings']['threads']} thread(s)",
    ]
    for name, entry in report["backends"].items():
        engine = ", ".join(
            f"batch {t['batch']}: {t['median_ms_per_face']:.2f} ms/face (p95 {t['p95_ms_per_face']:.2f})"
            for t in entry["engine"].values()
        )
        lines.append(f"{entry['enhancer']:>22}  engine {engine}")
        for size, p in entry["pipeline"].items():
            lines.append(
                f"{'':>22}  pipeline {size}: {p['fps']:.1f} fps, adds {p['latency_ms']['p50']:.1f} ms "
                f"(p95 {p['latency_ms']['p95']:.1f}), faces/frame {p['mean_faces']:.2f}"
            )
    if "soak" in report:
        s = report["soak"]
        lines.append(
            f"soak: {s['minutes']} min, {s['frames']} frames, RSS {s['rss_start_mb']:.0f} -> {s['rss_end_mb']:.0f} MB, "
            f"slope {s['rss_slope_mb_per_min']:+.2f} MB/min"
        )
    return lines
