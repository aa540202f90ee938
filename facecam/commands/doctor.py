"""``nasfe-cam doctor``: what works on this machine, and what to do about what does not."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NAME = "doctor"
HELP = "Check camera, face detector, engine, GPU/TensorRT, virtual camera and tray support; one line each."


@dataclass(frozen=True)
class Check:
    """One line of the report: ``ok`` or a warning with what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        tag = "ok  " if self.ok else "warn"
        fix = f" -> {self.fix}" if self.fix and not self.ok else ""
        return f"[{tag}] {self.name}: {self.detail}{fix}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", default="0", help="camera to test (index or /dev/videoN; default 0)")


def check_camera(spec: str) -> Check:
    from facecam.capture import Capture, CaptureError, parse_source

    try:
        with Capture(parse_source(spec), realtime=True) as cap:
            detail = f"{cap.describe()} gives {cap.width}x{cap.height} at {cap.fps:g} fps"
            return Check("camera", True, detail)
    except CaptureError as exc:
        return Check(
            "camera", False, str(exc),
            "plug in a webcam or pass --input FILE (make run falls back to the bundled sample clip)",
        )


def check_detector() -> Check:
    from facecam.detect import BLAZEFACE_MODEL, MediaPipeDetector, YuNetDetector

    try:
        MediaPipeDetector().close()
        return Check("face detector", True, f"MediaPipe BlazeFace ({BLAZEFACE_MODEL.name})")
    except Exception as exc:  # report any failure to load, whatever its type
        try:
            YuNetDetector().close()
            fallback = "YuNet fallback works"
        except Exception as exc2:
            fallback = f"YuNet fallback failed too ({exc2})"
        return Check(
            "face detector", False, f"MediaPipe did not load ({exc}); {fallback}",
            "reinstall with `make install` (mediapipe>=0.10.20) and keep assets/models/ complete",
        )


def check_engine() -> Check:
    try:
        from engine.runtime import load_enhancer
    except ImportError as exc:
        return Check("engine", False, f"engine.runtime.load_enhancer unavailable ({exc})",
                     "this build has no inference runtime yet; `nasfe-cam run` needs it")
    try:
        enhancer = load_enhancer(backend="auto")
    except Exception as exc:  # report any failure to load, whatever its type
        return Check("engine", False, f"loading the shipped model failed: {exc}",
                     "check assets/ holds the weights, or pass --weights FILE")
    return Check("engine", True, f"backend {enhancer.name}, crop {enhancer.crop_size}px")


def check_gpu() -> Check:
    import importlib.util

    import torch

    trt = [m for m in ("tensorrt", "torch_tensorrt") if importlib.util.find_spec(m) is not None]
    if not torch.cuda.is_available():
        return Check("GPU / TensorRT", False, f"no CUDA GPU visible to torch {torch.__version__}; "
                     f"TensorRT modules: {', '.join(trt) or 'none'}",
                     "the engine runs on CPU (lower fps); fastest: a CUDA GPU and pip install '.[tensorrt]'")
    name = torch.cuda.get_device_name(0)
    if not trt:
        return Check("GPU / TensorRT", False, f"{name}; TensorRT not installed",
                     "pip install '.[tensorrt]' for the fastest backend")
    return Check("GPU / TensorRT", True, f"{name}; {', '.join(trt)}")


def _loopback_devices() -> list[tuple[str, str]]:
    """(``/dev/videoN``, card label) of virtual (v4l2loopback) video devices on Linux.

    Real webcams sit under a bus (``/sys/devices/pci...``); loopback devices under ``/sys/devices/virtual``.
    """
    found = []
    for node in sorted(Path("/sys/class/video4linux").glob("video*")):
        if "/virtual/" in str(node.resolve()):
            name = (node / "name").read_text().strip() if (node / "name").is_file() else ""
            found.append((f"/dev/{node.name}", name))
    return found


def check_virtual_camera() -> Check:
    from facecam.sinks import VCAM_HINT, VirtualCameraSink

    label = ""
    if sys.platform.startswith("linux"):
        devices = _loopback_devices()
        if not devices:
            return Check("virtual camera", False, "no v4l2loopback device", VCAM_HINT)
        label = f" labelled {devices[0][1]!r}" if devices[0][1] else ""
    try:
        with VirtualCameraSink(width=640, height=480, fps=30) as cam:
            return Check("virtual camera", True, f"{cam.device}{label} via {cam.backend}")
    except (RuntimeError, ImportError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check("virtual camera", False, f"cannot open one ({first})", VCAM_HINT)


def check_tray() -> Check:
    from facecam.sinks import has_display

    try:
        from PyQt6.QtCore import QT_VERSION_STR
    except ImportError as exc:
        return Check("Qt / tray", False, f"PyQt6 missing ({exc})", "reinstall with `make install`")
    if not has_display():
        return Check("Qt / tray", False, f"Qt {QT_VERSION_STR} installed but no display",
                     "run the tray inside a desktop session (DISPLAY or WAYLAND_DISPLAY set)")
    return Check("Qt / tray", True, f"Qt {QT_VERSION_STR}, display available")


def run(args: argparse.Namespace) -> int:
    checks: list[Callable[[], Check]] = [
        lambda: check_camera(args.camera),
        check_detector,
        check_engine,
        check_gpu,
        check_virtual_camera,
        check_tray,
    ]
    for check in checks:
        print(check().line(), flush=True)
    return 0
