"""Capture: frames from a camera, a V4L2 device path or a video file, read on their own thread.

A live camera hands over only its newest frame (a slow consumer gets the latest picture, not a
growing backlog) and, when the device disappears (USB unplugged, another app grabbed it), the
reader keeps trying to reopen it with exponential backoff while the rest of the filter keeps sending
the last picture. A video file is read lossless, or paced at its own frame rate when ``realtime``
(e.g. the sample clip feeding the virtual camera), optionally looping.

Frames are uint8 ``(H, W, 3)`` BGR, as OpenCV decodes them (grey and BGRA frames are converted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facecam.framequeue import END_OF_STREAM, FrameQueue
from facecam.quiet import native_stderr_silenced
from facecam.ratelimit import WarningThrottle
from facecam.stats import PipelineStats

__all__ = [
    "CapturedFrame", "VideoSource", "CaptureError", "as_bgr", "open_video", "parse_source", "is_live", "Capture",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CapturedFrame:
    """One frame as captured.

    Attributes:
        index: 0-based count of frames this capture has delivered.
        t_s: time in seconds: media time (``index / fps``) for files, monotonic seconds since start
            for live sources.
        image_bgr: ``(H, W, 3)`` uint8 BGR; never written after it is queued.
    """

    index: int
    t_s: float
    image_bgr: np.ndarray


class VideoSource(Protocol):
    """The part of ``cv2.VideoCapture`` the reader uses (tests substitute a fake)."""

    def isOpened(self) -> bool: ...  # noqa: N802 -- OpenCV's name

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop_id: int) -> float: ...

    def release(self) -> None: ...


class CaptureError(RuntimeError):
    """The source could not be opened or gave no first frame."""


def as_bgr(image: np.ndarray) -> np.ndarray | None:
    """A decoded frame as uint8 ``(H, W, 3)`` BGR: grey ``(H, W)`` / ``(H, W, 1)`` and BGRA frames
    (some drivers and IR cameras deliver them) are converted; anything else is ``None`` (unusable)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.size == 0:
        return None
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image if image.shape[2] == 3 else None


def open_video(source: int | str) -> VideoSource:
    """``cv2.VideoCapture(source)`` without OpenCV's console warnings for a missing device."""
    with native_stderr_silenced():
        return cv2.VideoCapture(source)


def parse_source(spec: str | int) -> int | str:
    """``"0"`` -> camera index 0; anything else (``/dev/video2``, ``clip.mp4``) stays a path string."""
    if isinstance(spec, int):
        return spec
    return int(spec) if spec.strip().isdigit() else spec


def is_live(source: int | str) -> bool:
    """Whether ``source`` is a camera (index, ``/dev/video*`` or a stream URL) rather than a file."""
    if isinstance(source, int):
        return True
    return source.startswith("/dev/video") or "://" in source


class Capture:
    """Reads frames on a background thread into a bounded queue.

    Args:
        source: camera index, device path or video file path.
        loop: restart a video file at its end (ignored for cameras).
        realtime: pace delivery like a camera and drop stale frames. Defaults to ``is_live(source)``;
            set it for a file that feeds a live output.
        transform: applied to every frame on the capture thread (e.g. a :class:`FrameDegrader`), BGR in
            and out.
        queue_size: frames held for the consumer (realtime drops the oldest beyond it).
        backoff_s: ``(first, max)`` delay between reconnection attempts of a lost camera, doubling.
        opener: makes a :class:`VideoSource` from ``source`` (default :func:`open_video`).
        stats: counters for captured / dropped frames, reconnects and connection state.

    Raises:
        CaptureError: the source does not open or yields no first frame.
    """

    def __init__(
        self,
        source: int | str,
        *,
        loop: bool = False,
        realtime: bool | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        queue_size: int = 1,
        backoff_s: tuple[float, float] = (0.25, 4.0),
        opener: Callable[[int | str], VideoSource] | None = None,
        stats: PipelineStats | None = None,
    ) -> None:
        self.source = source
        self.live = is_live(source)
        self.loop = loop and not self.live
        self.realtime = self.live if realtime is None else realtime
        self.stats = stats or PipelineStats()
        self._transform = transform
        self._backoff_s = backoff_s
        self._opener = opener or open_video
        self._throttle = WarningThrottle(log)
        self._queue: FrameQueue[CapturedFrame] = FrameQueue(
            queue_size, drop_stale=self.realtime, on_drop=lambda n: self.stats.count("dropped_frames", n)
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        if not self.live and not Path(source).is_file():  # type: ignore[arg-type]
            raise CaptureError(f"video file not found: {source}")
        self._cap = self._open()
        ok, first = self._cap.read() if self._cap.isOpened() else (False, None)
        first = as_bgr(first) if ok and first is not None else None
        if first is None:
            self._cap.release()
            raise CaptureError(f"cannot read from {self.describe()}: it did not open or gave no frame")
        self._first: np.ndarray | None = first
        self.height, self.width = first.shape[:2]
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        #: Nominal frame rate (frames per second); 30 when the source does not say.
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0
        count = 0 if self.live else int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        #: Frames in one pass of a video file (``None`` for cameras or when the container does not say).
        self.frame_count: int | None = count if count > 0 else None
        self._index = 0
        self._t0 = time.monotonic()
        self.stats.set_source_connected(True)

    def describe(self) -> str:
        """Human-readable name of the source, e.g. ``camera 0`` or ``video file clip.mp4``."""
        if isinstance(self.source, int):
            return f"camera {self.source}"
        return f"camera {self.source}" if self.live else f"video file {self.source}"

    def _open(self) -> VideoSource:
        return self._opener(self.source)

    # -- consumer side -------------------------------------------------------------------------

    def start(self) -> Capture:
        """Start the reader thread (once); returns ``self``."""
        if self._thread is None:
            self._t0 = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="facecam-capture", daemon=True)
            self._thread.start()
        return self

    def get(self, timeout_s: float) -> CapturedFrame:
        """Next frame, or :data:`~facecam.framequeue.END_OF_STREAM` after the last one.

        Raises:
            facecam.framequeue.Empty: nothing arrived within ``timeout_s`` seconds.
        """
        return self._queue.get(timeout_s)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the reader to finish and wait up to ``timeout_s`` for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("capture thread did not stop within %.1f s (blocked in a device read)", timeout_s)

    def close(self) -> None:
        """Stop the reader and release the device or file."""
        self.stop()
        if self._thread is None or not self._thread.is_alive():
            self._cap.release()
        self.stats.set_source_connected(False)

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reader thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._read_loop()
        finally:  # even if this thread dies, the consumer learns the stream ended
            self._queue.put(END_OF_STREAM, stop=self._stop)  # type: ignore[arg-type]

    def _read_loop(self) -> None:
        image, self._first = self._first, None
        while not self._stop.is_set():
            if image is None:
                image = self._next_image()
                if image is None:
                    break
            if self.realtime and not self.live:  # a file standing in for a camera: its own pace
                due = self._t0 + self._index / self.fps
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
            t_s = time.monotonic() - self._t0 if self.live else self._index / self.fps
            if (image.shape[0], image.shape[1]) != (self.height, self.width):  # e.g. another camera
                image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
            if self._transform is not None:
                image = self._transform(image)
            if not self._queue.put(CapturedFrame(self._index, t_s, image), stop=self._stop):
                break
            self._index += 1
            self.stats.count("frames_captured")
            image = None

    def _next_image(self) -> np.ndarray | None:
        """The next decoded frame; handles end of file, looping and lost cameras. None = finished."""
        just_reopened = False
        while not self._stop.is_set():
            try:
                ok, image = self._cap.read()
            except cv2.error as exc:  # some drivers raise instead of returning False when unplugged
                self._throttle.warn("read", f"reading {self.describe()} failed: {exc}")
                ok, image = False, None
            if ok and image is not None:
                bgr = as_bgr(image)
                if bgr is not None:
                    return bgr
                self._throttle.warn("format", f"{self.describe()} gave an unusable {image.shape} {image.dtype} frame")
                ok = False
            if not self.live:
                if not self.loop or just_reopened:  # a file that yields nothing after a rewind: done
                    return None
                self._cap.release()
                self._cap, just_reopened = self._open(), True
                continue
            self.stats.set_source_connected(False)
            self._throttle.warn("lost", f"{self.describe()} stopped delivering frames; reconnecting")
            if not self._reconnect():
                return None
        return None

    def _reconnect(self) -> bool:
        """Reopen a lost camera, backing off exponentially; False if stopped first."""
        self._cap.release()
        delay = self._backoff_s[0]
        while not self._stop.wait(delay):
            cap = self._try_open()
            if cap is not None:
                self._cap = cap
                self.stats.count("reconnects")
                self.stats.set_source_connected(True)
                log.info("%s reconnected", self.describe())
                return True
            delay = min(delay * 2.0, self._backoff_s[1])
        return False

    def _try_open(self) -> VideoSource | None:
        try:
            cap = self._open()
        except Exception as exc:  # a flaky driver may raise instead of reporting "not opened"
            self._throttle.warn("reopen", f"reopening {self.describe()} failed: {exc}")
            return None
        if cap.isOpened():
            return cap
        cap.release()
        return None
