"""Output sinks: the virtual camera (default), a preview window, a side-by-side PNG, a video file.

Every sink takes the processed frame and the frame it came from, both uint8 ``(H, W, 3)`` BGR, and
is a context manager. ``live`` sinks (virtual camera, window) want frames at a steady rate, so the
runner paces them and repeats the last frame when processing falls behind; file sinks take every
frame exactly once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facecam.files import commit_partial, partial_path, write_image_atomic

__all__ = [
    "FrameSink",
    "VirtualCameraSink",
    "PreviewWindowSink",
    "SideBySidePngSink",
    "VideoFileSink",
    "VIDEO_SUFFIXES",
    "VCAM_HINT",
    "has_display",
    "side_by_side",
]

#: What to do when no virtual camera opens, per platform.
VCAM_HINT = {
    "linux": 'sudo modprobe v4l2loopback devices=1 card_label="NASFE Cam" exclusive_caps=1',
    "win32": "install OBS Studio (its Virtual Camera) or Unity Capture",
    "darwin": "install OBS Studio 30+ and start its Virtual Camera once",
}.get(sys.platform, "install v4l2loopback (Linux) or OBS Studio (Windows/macOS)")

#: Video container suffix -> FourCC that this OpenCV build writes without extra codecs.
VIDEO_SUFFIXES = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class FrameSink(Protocol):
    """Where processed frames go."""

    #: True if the sink wants frames at a steady rate (the runner repeats the last one if needed).
    live: bool

    def send(self, frame_bgr: np.ndarray, source_bgr: np.ndarray) -> None:
        """Deliver one processed frame and the input frame it was made from (both BGR uint8)."""
        ...

    def close(self) -> None:
        """Finish and release (files are complete and in place afterwards)."""
        ...


def has_display() -> bool:
    """Whether a window can be shown (on Linux: an X11 or Wayland display is set)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def side_by_side(before_bgr: np.ndarray, after_bgr: np.ndarray) -> np.ndarray:
    """``before | after`` in one ``(H, 2W, 3)`` uint8 BGR image with a 2-pixel white divider."""
    if before_bgr.shape != after_bgr.shape:
        raise ValueError(f"frame shapes differ: {before_bgr.shape} != {after_bgr.shape}")
    divider = np.full((before_bgr.shape[0], 2, 3), 255, np.uint8)
    return np.hstack([before_bgr, divider, after_bgr])


class VirtualCameraSink:
    """A pyvirtualcam virtual camera (v4l2loopback on Linux, OBS / Unity Capture elsewhere).

    Args:
        width, height: frame size in pixels.
        fps: frame rate announced to the device.
        device: a specific device (e.g. ``/dev/video10``) or ``None`` for the first free one.
        backend: a pyvirtualcam backend name or ``None`` to try all.

    Raises:
        RuntimeError: no virtual camera could be opened (pyvirtualcam's message names each backend).
    """

    live = True

    def __init__(
        self, *, width: int, height: int, fps: float, device: str | None = None, backend: str | None = None
    ) -> None:
        import pyvirtualcam

        self._cam = pyvirtualcam.Camera(
            width, height, fps, fmt=pyvirtualcam.PixelFormat.BGR, device=device, backend=backend
        )
        #: The device in use, e.g. ``/dev/video10`` or ``OBS Virtual Camera``.
        self.device: str = self._cam.device
        #: The pyvirtualcam backend in use, e.g. ``v4l2loopback``.
        self.backend: str = self._cam.backend

    def send(self, frame_bgr: np.ndarray, source_bgr: np.ndarray) -> None:
        """Send ``frame_bgr``; raises ValueError naming both shapes if its size is not the camera's."""
        self._cam.send(frame_bgr)

    def close(self) -> None:
        """Release the device."""
        self._cam.close()

    def __enter__(self) -> VirtualCameraSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PreviewWindowSink:
    """An OpenCV window showing ``before | after``; ``q`` or Esc calls ``on_quit``.

    Args:
        title: window title.
        on_quit: called (from the sending thread) when the user presses ``q`` or Esc.
    """

    live = True

    def __init__(
        self, *, title: str = "NASFE Cam (q to quit)", on_quit: Callable[[], None] | None = None
    ) -> None:
        self.title = title
        self._on_quit = on_quit

    def send(self, frame_bgr: np.ndarray, source_bgr: np.ndarray) -> None:
        """Show the pair and poll the keyboard."""
        cv2.imshow(self.title, side_by_side(source_bgr, frame_bgr))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27) and self._on_quit is not None:
            self._on_quit()

    def close(self) -> None:
        """Close the window."""
        cv2.destroyWindow(self.title)

    def __enter__(self) -> PreviewWindowSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SideBySidePngSink:
    """Writes ``before | after`` as a PNG now and then (the preview when there is no display).

    Args:
        path: the ``.png`` to (re)write atomically.
        every_n_frames: rewrite after this many frames; the latest pair is always written at close.
    """

    live = False

    def __init__(self, path: str | Path, *, every_n_frames: int = 30) -> None:
        self.path = Path(path)
        self.every_n_frames = every_n_frames
        self._count = 0
        self._latest: tuple[np.ndarray, np.ndarray] | None = None

    def send(self, frame_bgr: np.ndarray, source_bgr: np.ndarray) -> None:
        """Keep the pair; write it every ``every_n_frames`` frames."""
        self._latest = (source_bgr, frame_bgr)
        self._count += 1
        if self._count % self.every_n_frames == 1:
            write_image_atomic(self.path, side_by_side(*self._latest))

    def close(self) -> None:
        """Write the latest pair."""
        if self._latest is not None:
            write_image_atomic(self.path, side_by_side(*self._latest))

    def __enter__(self) -> SideBySidePngSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoFileSink:
    """Writes frames to a video file, complete under its name only once closed.

    Args:
        path: output file; its suffix (one of :data:`VIDEO_SUFFIXES`) picks the container and codec.
        width, height: frame size in pixels.
        fps: frame rate written to the file.

    Raises:
        ValueError: unsupported suffix.
        OSError: OpenCV cannot open a writer.
    """

    live = False

    def __init__(self, path: str | Path, *, width: int, height: int, fps: float) -> None:
        self.path = Path(path)
        fourcc = VIDEO_SUFFIXES.get(self.path.suffix.lower())
        if fourcc is None:
            raise ValueError(
                f"unsupported video suffix {self.path.suffix!r}: expected one of {', '.join(VIDEO_SUFFIXES)}"
            )
        self.size = (width, height)
        self.frames_written = 0
        self._tmp = partial_path(self.path)
        self._writer: cv2.VideoWriter | None = cv2.VideoWriter(
            str(self._tmp), cv2.VideoWriter_fourcc(*fourcc), fps, self.size
        )
        if not self._writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise OSError(f"OpenCV cannot write {fourcc} video to {self.path}")

    def send(self, frame_bgr: np.ndarray, source_bgr: np.ndarray) -> None:
        """Append ``frame_bgr``; its size must be the writer's."""
        if (frame_bgr.shape[1], frame_bgr.shape[0]) != self.size:
            raise ValueError(f"unexpected frame size: {frame_bgr.shape[1::-1]} != {self.size}")
        if self._writer is None:
            raise ValueError(f"video file {self.path} is already closed")
        self._writer.write(frame_bgr)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it into place (idempotent)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            commit_partial(self._tmp, self.path)

    def abort(self) -> None:
        """Stop writing and delete the partial file; nothing appears under ``path``."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoFileSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Keep the file on success, discard it if the block raised."""
        if exc_type is None:
            self.close()
        else:
            self.abort()
