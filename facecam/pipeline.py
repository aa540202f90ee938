"""One frame through the filter, top to bottom: detect -> track -> align -> enhance -> expose -> paste.

:class:`FramePipeline` is synchronous and single-threaded (the threaded camera runner in
:mod:`facecam.runner` calls it from its frame thread; ``nasfe-cam enhance`` calls it directly). It
never raises on a bad frame: an exception or a non-finite result anywhere in detection or
enhancement makes that frame pass through unenhanced, with a rate-limited warning.

Frames are uint8 ``(H, W, 3)`` BGR (OpenCV order) in and out; crops cross the engine boundary as
uint8 RGB, as :class:`engine.enhancer.Enhancer` requires.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from engine.align import crop_matrix, warp_to_crop
from engine.enhancer import Enhancer
from facecam.blend import ExposureFollower, FaceCompositor
from facecam.controls import PipelineControls, Settings, mode_prior
from facecam.detect import FaceDetector, open_detector
from facecam.ratelimit import WarningThrottle
from facecam.stats import PipelineStats
from facecam.track import FaceTracker, TrackedFace

__all__ = ["FrameResult", "FramePipeline", "EnhancerOutputError"]

log = logging.getLogger(__name__)


class EnhancerOutputError(RuntimeError):
    """The engine returned something that is not a batch of uint8 crops of the right shape."""


@dataclass(frozen=True)
class FrameResult:
    """One processed frame.

    Attributes:
        image_bgr: ``(H, W, 3)`` uint8 BGR output; the input array itself when passed through.
        faces: the tracked faces used for this frame (pixels), largest first.
        enhanced: False when the frame passed through (no face, strength 0, bypass, or an error).
        error: why enhancement failed for this frame, or ``None``.
        gain: ``(3,)`` linear-light exposure gain applied to the frame, BGR order (ones if none).
    """

    image_bgr: np.ndarray
    faces: tuple[TrackedFace, ...]
    enhanced: bool
    error: str | None = None
    gain: np.ndarray = field(default_factory=lambda: np.ones(3))


def _check_crops(out: np.ndarray, expected: tuple[int, ...]) -> np.ndarray:
    out = np.asarray(out)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise EnhancerOutputError(f"enhancer returned NaN or inf in a {out.shape} {out.dtype} batch")
    if out.shape != expected or out.dtype != np.uint8:
        raise EnhancerOutputError(f"unexpected enhancer output: {out.shape} {out.dtype} != {expected} uint8")
    return out


class FramePipeline:
    """Restores the faces of one frame at a time.

    Args:
        enhancer: the engine (any :class:`engine.enhancer.Enhancer`), injected so tests and backends
            can be swapped; its ``crop_size`` sets the alignment crop.
        detector: a face detector; by default :func:`facecam.detect.open_detector` (closed by
            :meth:`close`; a detector passed in is left to its owner).
        tracker: landmark association and smoothing; by default a :class:`FaceTracker`.
        controls: live settings (strength, mode, identity, bypass); by default a fresh one.
        stats: where per-stage latencies and counters go; by default a fresh one.
        max_faces: most faces enhanced per frame, largest first (one engine batch).
        exposure: scene exposure follower; by default an :class:`ExposureFollower`.
    """

    def __init__(
        self,
        enhancer: Enhancer,
        *,
        detector: FaceDetector | None = None,
        tracker: FaceTracker | None = None,
        controls: PipelineControls | None = None,
        stats: PipelineStats | None = None,
        max_faces: int = 4,
        exposure: ExposureFollower | None = None,
    ) -> None:
        self.enhancer = enhancer
        self.crop_size = int(enhancer.crop_size)
        self._owns_detector = detector is None
        self.detector = open_detector(max_faces=max_faces) if detector is None else detector
        self.tracker = tracker or FaceTracker(max_faces=max_faces)
        self.controls = controls or PipelineControls()
        self.stats = stats or PipelineStats()
        self.exposure = exposure or ExposureFollower()
        self.compositor = FaceCompositor(crop_size=self.crop_size)
        self._throttle = WarningThrottle(log)

    def reset(self) -> None:
        """Forget temporal state (tracks, smoothed exposure): call between unrelated images."""
        self.tracker.reset()
        self.exposure.reset()

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.stats.record_latency(stage, time.perf_counter() - t0)

    def process(self, frame_bgr: np.ndarray, t_s: float) -> FrameResult:
        """Enhance the faces in one frame.

        Args:
            frame_bgr: ``(H, W, 3)`` uint8 BGR frame; never modified.
            t_s: the frame's time in seconds, increasing (drives tracking and exposure smoothing).

        Returns:
            The processed frame; on any failure the input frame itself, with ``error`` set.
        """
        if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"unexpected frame: {frame_bgr.shape} {frame_bgr.dtype} != (H, W, 3) uint8")
        settings = self.controls.snapshot()
        t0 = time.perf_counter()
        try:
            result = self._process(frame_bgr, t_s, settings)
        except Exception as exc:  # a running camera never dies from a bad frame
            message = f"{type(exc).__name__}: {exc}"
            self.stats.count("enhance_errors")
            self._throttle.warn(type(exc).__name__, f"frame passed through unenhanced: {message}")
            result = FrameResult(frame_bgr, (), enhanced=False, error=message)
        self.stats.record_latency("total", time.perf_counter() - t0)
        self.stats.frame_processed(faces=len(result.faces), enhanced=result.enhanced)
        return result

    def _process(self, frame: np.ndarray, t_s: float, settings: Settings) -> FrameResult:
        if not settings.enabled or settings.strength == 0.0:
            return FrameResult(frame, (), enhanced=False)
        s = self.crop_size

        with self._timed("detect"):
            detections = self.detector.detect(frame, int(round(t_s * 1000)))
        with self._timed("track"):
            faces = tuple(self.tracker.update(detections, t_s))
        if not faces:  # unchanged, unless the scene exposure is still fading back from a face
            if not self.exposure.active:
                return FrameResult(frame, faces, enhanced=False)
            gain = self.exposure.release(t_s)
            out = self.exposure.apply(frame, gain) if self.exposure.active else frame
            return FrameResult(out, faces, enhanced=False, gain=gain)

        with self._timed("align"):
            matrices = [crop_matrix(f.landmarks4_px, s) for f in faces]
            crops_bgr = np.stack([warp_to_crop(frame, m, s) for m in matrices])
            crops_rgb = np.ascontiguousarray(crops_bgr[..., ::-1])

        with self._timed("enhance"):  # all faces of the frame in one batch
            prior = mode_prior(settings.mode, len(faces))
            out_rgb = self.enhancer.enhance(crops_rgb, prior, settings.identity)
            out_rgb = _check_crops(out_rgb, crops_rgb.shape)
        restored = out_rgb[..., ::-1].astype(np.float32)
        if settings.strength < 1.0:
            restored = crops_bgr + settings.strength * (restored - crops_bgr)
        restored = np.clip(restored + 0.5, 0, 255).astype(np.uint8)

        with self._timed("exposure"):  # the scene follows the light the engine gave the faces
            measured = self.exposure.measure(crops_bgr, restored, self.compositor.mask)
            gain = self.exposure.update(measured, t_s)
            out = self.exposure.apply(frame, gain)

        with self._timed("paste"):
            for crop, m in zip(restored, matrices):
                self.compositor.paste(out, crop, m)
        return FrameResult(out, faces, enhanced=True, gain=gain)

    def close(self) -> None:
        """Release the detector if this pipeline opened it."""
        if self._owns_detector:
            self.detector.close()

    def __enter__(self) -> FramePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
