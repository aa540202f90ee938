"""Everything the tray opens from the outside world, as one replaceable bundle.

The tray never constructs an engine, camera, detector, virtual camera or identity encoder itself: it
asks its :class:`Providers`. :func:`default_providers` gives the real ones; tests pass doubles
(an :class:`~engine.enhancer.Enhancer`-protocol engine, a fake frame source, a fake detector).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.enhancer import Enhancer
from facecam.capture import Capture, CaptureError, is_live, parse_source
from facecam.detect import FaceDetector, open_detector
from facecam.session import SAMPLE_CLIP
from facecam.simulate import FrameDegrader
from facecam.sinks import FrameSink, VirtualCameraSink
from facecam.stats import PipelineStats
from facecam.tray.devices import AUTO, SAMPLE, CameraOption, list_cameras

__all__ = ["Providers", "default_providers", "open_camera", "open_virtual_camera", "SAMPLE_SIMULATION"]

#: Degradations applied to the sample clip so there is something to restore (see facecam.simulate).
SAMPLE_SIMULATION = "bnl"


@dataclass(frozen=True)
class Providers:
    """How the tray opens things; every callable may be slow and is called off the Qt thread.

    Attributes:
        load_engine: returns the engine; raises (any exception, its message shown) when unavailable.
        open_capture: ``(camera setting, stats) -> (Capture not yet started, description)``; raises
            :class:`~facecam.capture.CaptureError` when the camera does not open.
        open_detector: a face detector for the pipeline or for enrolment (closed by the caller).
        open_vcam: ``(width, height, fps, device or None) -> (sink, description)``; raises
            RuntimeError / ImportError / OSError / ValueError when no virtual camera opens.
        list_cameras: the Camera menu's entries (cheap: no device is opened).
        enroll: ``(n, S, S, 3)`` uint8 RGB crops -> ``(C, h, w)`` float32 identity prior.
    """

    load_engine: Callable[[], Enhancer]
    open_capture: Callable[[str, PipelineStats], tuple[Capture, str]]
    open_detector: Callable[[], FaceDetector]
    open_vcam: Callable[[int, int, float, str | None], tuple[FrameSink, str]]
    list_cameras: Callable[[], list[CameraOption]]
    enroll: Callable[[np.ndarray], np.ndarray]


def open_camera(spec: str, stats: PipelineStats) -> tuple[Capture, str]:
    """Open a camera setting (see :class:`facecam.tray.settings.TraySettings.camera`) as a live source.

    ``auto`` tries each listed camera, then falls back to the sample clip. Video files (and the sample
    clip) loop at their own frame rate, like a camera.

    Raises:
        CaptureError: the camera or file does not open.
    """
    if spec == AUTO:
        for option in list_cameras():
            try:
                return open_camera(option.spec, stats)
            except CaptureError:
                continue
        capture, description = open_camera(SAMPLE, stats)
        return capture, f"{description}; no camera found"
    if spec == SAMPLE:
        degrader = FrameDegrader(kinds=SAMPLE_SIMULATION, seed=0)
        capture = Capture(str(SAMPLE_CLIP), loop=True, realtime=True, transform=degrader, stats=stats)
        return capture, "sample clip (simulated blur, noise and low light)"
    source = parse_source(spec)
    if is_live(source):
        return Capture(source, realtime=True, stats=stats), f"camera {source}"
    return Capture(source, loop=True, realtime=True, stats=stats), f"video file {Path(str(source)).name}"


def open_virtual_camera(width: int, height: int, fps: float, device: str | None) -> tuple[FrameSink, str]:
    """The pyvirtualcam output; raises RuntimeError (or ImportError) when none opens."""
    sink = VirtualCameraSink(width=width, height=height, fps=fps, device=device)
    return sink, f"virtual camera {sink.device} ({sink.backend})"


def _enroll(crops_rgb: np.ndarray) -> np.ndarray:
    from engine.identity import enroll  # torch and the recogniser load only when someone enrols

    return enroll(crops_rgb)


def default_providers(*, backend: str = "auto", weights: Path | None = None) -> Providers:
    """The real engine (``engine.runtime``), cameras, MediaPipe detector, virtual camera and encoder."""
    from facecam.commands.common import load_engine

    return Providers(
        load_engine=lambda: load_engine(backend, weights),
        open_capture=open_camera,
        open_detector=open_detector,
        open_vcam=open_virtual_camera,
        list_cameras=list_cameras,
        enroll=_enroll,
    )
