"""The hand-over from the filter's sender thread to the Qt thread: the newest frame pair only.

:class:`FrameBridge` is a live :class:`~facecam.sinks.FrameSink`. ``send`` (sender thread) keeps
the newest ``(processed, source)`` pair and emits ``frame_ready`` only if the previous one was taken,
so a busy UI never builds up a backlog of queued signals or frames: it always gets the latest picture.
"""

from __future__ import annotations

import threading

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

__all__ = ["FrameBridge"]


class FrameBridge(QObject):
    """Latest-frame slot plus a coalesced Qt signal.

    Frames are uint8 ``(H, W, 3)`` BGR, as the filter sends them; they are never written after sending.
    """

    #: A new pair is waiting; call :meth:`take` (emitted once per taken pair, from the sender thread).
    frame_ready = pyqtSignal()
    live = True

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: tuple[np.ndarray, np.ndarray] | None = None
        self._waiting = False
        self._sent = 0

    @property
    def frames_sent(self) -> int:
        """How many pairs the filter has sent through this bridge so far."""
        with self._lock:
            return self._sent

    def send(self, frame_bgr: np.ndarray, source_bgr: np.ndarray) -> None:
        """Keep the newest pair (called by the filter's sender thread)."""
        with self._lock:
            self._latest = (frame_bgr, source_bgr)
            self._sent += 1
            notify, self._waiting = not self._waiting, True
        if notify:
            self.frame_ready.emit()

    def take(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The newest ``(processed, source)`` pair, or ``None`` before the first frame."""
        with self._lock:
            self._waiting = False
            return self._latest

    def close(self) -> None:
        """Nothing to release; the bridge outlives the filters that feed it."""
