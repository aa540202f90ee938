"""The running filter: capture thread -> frame thread -> sender thread -> sinks.

Threads hand frames over through bounded :class:`~facecam.framequeue.FrameQueue` s. With a live
sink (virtual camera, window) the sender is paced at the source's frame rate and repeats the last
processed frame whenever no new one is ready, so video-call apps never see the camera stall, even
while the engine is slow or the webcam is reconnecting. Without one (file to file) every frame is
processed and written exactly once.

Shutdown: :meth:`CameraFilter.stop` sets one :class:`threading.Event` that every loop checks, then
joins each thread with a timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facecam.capture import Capture, CapturedFrame
from facecam.controls import PipelineControls
from facecam.framequeue import END_OF_STREAM, Empty, FrameQueue
from facecam.pipeline import FramePipeline
from facecam.ratelimit import WarningThrottle
from facecam.sinks import FrameSink
from facecam.stats import PipelineStats

__all__ = ["CameraFilter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Output:
    image_bgr: np.ndarray  # processed frame, (H, W, 3) uint8 BGR
    source_bgr: np.ndarray  # the captured frame it came from


class CameraFilter:
    """Runs a :class:`Capture` through a :class:`FramePipeline` into sinks, on three threads.

    The capture and the pipeline must share one :class:`PipelineStats` (the tray reads it). The
    filter starts and stops the capture's reader; opening and closing the capture, pipeline and
    sinks is their owner's job (see :class:`facecam.session.CameraSession`).

    Args:
        capture: the frame source (not yet started).
        pipeline: processes each frame.
        sinks: receive every sent frame, in order.
        max_frames: stop after this many processed frames (``None``: until the source ends or
            :meth:`stop`).
        fps: send rate for live sinks in frames per second; defaults to the capture's.

    Example:
        >>> with CameraFilter(capture, pipeline, [sink]) as running:  # doctest: +SKIP
        ...     running.controls.strength = 0.5
        ...     running.wait()
    """

    def __init__(
        self,
        capture: Capture,
        pipeline: FramePipeline,
        sinks: Sequence[FrameSink],
        *,
        max_frames: int | None = None,
        fps: float | None = None,
    ) -> None:
        if capture.stats is not pipeline.stats:
            raise ValueError("capture and pipeline must share one PipelineStats object")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
        self.capture = capture
        self.pipeline = pipeline
        self.sinks = list(sinks)
        self.max_frames = max_frames
        self.fps = float(fps or capture.fps)
        #: True when frames are sent at a steady rate (repeating the last one), else one per input.
        self.paced = capture.realtime or any(s.live for s in self.sinks)
        self._out: FrameQueue[_Output] = FrameQueue(
            1 if self.paced else 2,
            drop_stale=self.paced,
            on_drop=lambda n: self.stats.count("dropped_frames", n),
        )
        self._stop = threading.Event()
        self._final: _Output | None = None  # the last processed frame, always sent at the end
        self._finished = threading.Event()
        self._threads: list[threading.Thread] = []
        self._throttle = WarningThrottle(log)

    @property
    def controls(self) -> PipelineControls:
        """Live settings (strength, mode, bypass, identity); safe to set from any thread."""
        return self.pipeline.controls

    @property
    def stats(self) -> PipelineStats:
        """Live statistics; :meth:`PipelineStats.snapshot` is JSON-serialisable."""
        return self.pipeline.stats

    @property
    def running(self) -> bool:
        """Started and neither finished nor stopped."""
        return bool(self._threads) and not self._finished.is_set() and not self._stop.is_set()

    def start(self) -> CameraFilter:
        """Start the capture, frame and sender threads (once); returns ``self``."""
        if not self._threads:
            self.capture.start()
            for name, target in (("facecam-frames", self._process_loop), ("facecam-sender", self._send_loop)):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the last frame is sent (source ended or ``max_frames`` reached); False on timeout."""
        return self._finished.wait(timeout_s)

    def request_stop(self) -> None:
        """Ask every thread to finish, without waiting (safe from a sink's callback)."""
        self._stop.set()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop every thread, waiting up to ``timeout_s`` seconds for each."""
        self._stop.set()
        self.capture.stop(timeout_s)
        for thread in self._threads:
            if thread is threading.current_thread():
                continue
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("%s did not stop within %.1f s", thread.name, timeout_s)

    def __enter__(self) -> CameraFilter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- frame thread --------------------------------------------------------------------------

    def _process_loop(self) -> None:
        processed = 0
        try:
            while not self._stop.is_set():
                try:
                    item: CapturedFrame = self.capture.get(0.1)
                except Empty:
                    continue
                if item is END_OF_STREAM:
                    break
                result = self.pipeline.process(item.image_bgr, item.t_s)
                self._final = _Output(result.image_bgr, item.image_bgr)
                if not self._out.put(self._final, stop=self._stop):
                    break
                processed += 1
                if self.max_frames is not None and processed >= self.max_frames:
                    break
        finally:  # even if this thread dies, the sender finishes and wait() returns
            self._out.put(END_OF_STREAM, stop=self._stop)  # type: ignore[arg-type]

    # -- sender thread -------------------------------------------------------------------------

    def _send_loop(self) -> None:
        try:
            (self._send_paced if self.paced else self._send_each)()
        finally:
            self._finished.set()

    def _send_each(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._out.get(0.1)
            except Empty:
                continue
            if item is END_OF_STREAM:
                return
            self._deliver(item, fresh=True)

    def _send_paced(self) -> None:
        period = 1.0 / self.fps
        next_t = time.monotonic()
        last: _Output | None = None
        while not self._stop.is_set():
            item = self._out.get_latest()
            if item is END_OF_STREAM:  # the newest frame may have been superseded by the end marker
                if self._final is not None and self._final is not last:
                    self._deliver(self._final, fresh=True)
                return
            if item is not None:
                last = item
                self._deliver(item, fresh=True)
            elif last is not None:  # processing is behind or the camera is away: repeat the last frame
                self._deliver(last, fresh=False)
            next_t += period
            now = time.monotonic()
            if next_t < now - period:  # fell far behind (slow sink): resume the beat, no burst
                next_t = now
            self._stop.wait(max(0.0, next_t - now))

    def _deliver(self, item: _Output, *, fresh: bool) -> None:
        for sink in self.sinks:
            try:
                sink.send(item.image_bgr, item.source_bgr)
            except Exception as exc:  # a sink failing (device gone, disk full) must not stop the filter
                self.stats.count("sink_errors")
                self._throttle.warn(type(sink).__name__, f"{type(sink).__name__} failed: {exc}")
        self.stats.count("frames_sent" if fresh else "frames_repeated")
