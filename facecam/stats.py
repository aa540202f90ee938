"""Run statistics: frame rate, per-stage latency percentiles, faces, drops, errors, reconnects.

One :class:`PipelineStats` is shared by the capture, processing and sender threads; every method
takes its lock, and :meth:`PipelineStats.snapshot` returns a plain JSON-serialisable dict (what
``nasfe-cam run --stats-json`` writes and what the tray shows).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

__all__ = ["PipelineStats"]


class PipelineStats:
    """Thread-safe counters and rolling latency windows.

    Args:
        window: number of recent samples kept per stage (percentiles and fps use these).
    """

    def __init__(self, *, window: int = 300) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._latency_s: dict[str, deque[float]] = {}
        self._done_at: deque[float] = deque(maxlen=window)
        self._counts = {
            "frames_captured": 0,
            "frames_processed": 0,
            "frames_enhanced": 0,
            "frames_sent": 0,
            "frames_repeated": 0,
            "dropped_frames": 0,
            "enhance_errors": 0,
            "sink_errors": 0,
            "reconnects": 0,
        }
        self._faces = 0
        self._source_connected = False

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (one of the ``snapshot()`` integer keys)."""
        with self._lock:
            if name not in self._counts:
                raise KeyError(f"unknown counter {name!r}: expected one of {', '.join(self._counts)}")
            self._counts[name] += n

    def record_latency(self, stage: str, seconds: float) -> None:
        """Record how long ``stage`` took for one frame, in seconds."""
        with self._lock:
            window = self._latency_s.get(stage)
            if window is None:
                window = self._latency_s[stage] = deque(maxlen=self._window)
            window.append(seconds)

    def frame_processed(self, *, faces: int, enhanced: bool) -> None:
        """Note one processed frame, its face count and whether it was enhanced (or passed through)."""
        with self._lock:
            self._counts["frames_processed"] += 1
            self._counts["frames_enhanced"] += int(enhanced)
            self._faces = faces
            self._done_at.append(time.monotonic())

    def set_source_connected(self, connected: bool) -> None:
        """Capture reports whether its source is currently delivering frames."""
        with self._lock:
            self._source_connected = connected

    def value(self, name: str) -> int:
        """Current value of one counter."""
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict:
        """All statistics as a JSON-serialisable dict.

        Keys: every counter (ints), ``faces`` (faces in the latest frame), ``fps`` (processed frames per
        second over the recent window, float), ``source_connected`` (bool), ``latency_ms``:
        ``{stage: {"p50": ms, "p95": ms}}`` over the recent window.
        """
        with self._lock:
            done = list(self._done_at)
            fps = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
            latency = {
                stage: {
                    "p50": round(float(np.percentile(w, 50)) * 1e3, 3),
                    "p95": round(float(np.percentile(w, 95)) * 1e3, 3),
                }
                for stage, w in self._latency_s.items()
                if w
            }
            return {
                **self._counts,
                "faces": self._faces,
                "fps": round(fps, 2),
                "source_connected": self._source_connected,
                "latency_ms": latency,
            }
