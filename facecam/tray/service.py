"""The tray's camera filter: one camera -> pipeline -> (virtual camera +) the tray's frame sink.

Unlike :class:`facecam.session.CameraSession`, made for one command-line run, this is reopened
whenever the user picks another camera or output, always feeds the tray's own sink (preview and
enrolment), writes no files, and keeps running when the engine is unavailable: the frames then pass
through untouched (a bypassed pipeline) and :attr:`FilterStatus.engine_error` says why. Opening and
closing can take seconds (engine weights, detector, camera): the tray calls them off the Qt thread.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from engine.align import CROP_SIZE
from engine.enhancer import Enhancer
from facecam.capture import CaptureError
from facecam.controls import PipelineControls
from facecam.pipeline import FramePipeline
from facecam.runner import CameraFilter
from facecam.sinks import VCAM_HINT, FrameSink
from facecam.stats import PipelineStats
from facecam.tray.providers import Providers

__all__ = ["FilterChoice", "FilterStatus", "CameraOpenError", "UnavailableEngine", "FilterService"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilterChoice:
    """What to open: a camera setting, ``"vcam"`` or ``"off"``, and a specific virtual camera or ``None``."""

    camera: str
    output: str = "vcam"
    vcam_device: str | None = None


@dataclass(frozen=True)
class FilterStatus:
    """What :meth:`FilterService.open` opened, in words for the tray's tooltip and About box.

    Attributes:
        input: the camera, e.g. ``"camera /dev/video0"``.
        output: e.g. ``"virtual camera /dev/video10 (v4l2loopback)"`` or ``"preview only"``.
        engine: the engine's backend name, or ``None`` when unavailable.
        engine_error: why the engine is unavailable (frames pass through untouched), else ``None``.
        notes: other one-line messages for the user (e.g. how to get a virtual camera).
    """

    input: str
    output: str
    engine: str | None
    engine_error: str | None
    notes: tuple[str, ...] = ()


class CameraOpenError(RuntimeError):
    """The chosen camera did not open; the message says which and what to try."""


class UnavailableEngine:
    """Stands in for an engine that failed to load.

    The service runs its pipeline bypassed, so :meth:`enhance` is never reached; if it were, the
    pipeline would pass the frame through and count the error.
    """

    crop_size = CROP_SIZE
    name = "unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def enhance(
        self, crops: np.ndarray, prior: np.ndarray | None = None, identity: np.ndarray | None = None
    ) -> np.ndarray:
        raise RuntimeError(f"engine unavailable: {self.reason}")


class FilterService:
    """Opens, reopens and closes the running filter.

    Args:
        controls: the live settings the tray writes (strength, mode, enabled, identity).
        sink: the tray's frame sink (receives every sent frame with its source frame).
        providers: how to open the engine, camera, detector and virtual camera.

    Not thread-safe: call :meth:`open` and :meth:`close` from one thread (the tray's job thread);
    :attr:`stats` may be read from any thread.
    """

    def __init__(self, controls: PipelineControls, sink: FrameSink, providers: Providers) -> None:
        self.controls = controls
        self.sink = sink
        self.providers = providers
        #: Statistics of the filter now running (a fresh object per :meth:`open`).
        self.stats = PipelineStats()
        self.filter: CameraFilter | None = None
        self._stack = ExitStack()
        self._engine: Enhancer | None = None

    def _load_engine(self) -> tuple[Enhancer | None, str | None]:
        """The engine (loaded once, kept on success) or the reason it is unavailable."""
        if self._engine is None:
            try:
                self._engine = self.providers.load_engine()
            except Exception as exc:  # any failure to load means passthrough, with its message shown
                reason = str(exc) or type(exc).__name__
                log.warning("engine unavailable, frames pass through untouched: %s", reason)
                return None, reason
        return self._engine, None

    def open(self, choice: FilterChoice) -> FilterStatus:
        """Close what runs, then open and start ``choice``.

        Raises:
            CameraOpenError: the camera does not open (nothing is left running).
        """
        self.close()
        engine, engine_error = self._load_engine()
        stats = PipelineStats()
        notes: list[str] = []
        stack = ExitStack()
        try:
            try:
                capture, input_description = self.providers.open_capture(choice.camera, stats)
            except CaptureError as exc:
                raise CameraOpenError(f"{exc} (choose another camera, or try `nasfe-cam doctor`)") from exc
            stack.callback(capture.close)
            detector = self.providers.open_detector()
            stack.callback(detector.close)
            if engine is None:  # bypassed: bit-exact passthrough, the user's switches stay as they are
                pipeline = FramePipeline(
                    UnavailableEngine(engine_error or ""), detector=detector,
                    controls=PipelineControls(enabled=False), stats=stats,
                )
            else:
                pipeline = FramePipeline(engine, detector=detector, controls=self.controls, stats=stats)
            stack.callback(pipeline.close)
            sinks: list[FrameSink] = [self.sink]
            output_description = "preview only"
            if choice.output == "vcam":
                try:
                    vcam, output_description = self.providers.open_vcam(
                        capture.width, capture.height, capture.fps, choice.vcam_device
                    )
                except (RuntimeError, ImportError, OSError, ValueError) as exc:
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    notes.append(f"no virtual camera ({first}); to get one: {VCAM_HINT}")
                    output_description = "preview only (no virtual camera)"
                else:
                    stack.callback(vcam.close)
                    sinks.insert(0, vcam)
            running = CameraFilter(capture, pipeline, sinks)
            stack.callback(running.stop)
            running.start()
        except BaseException:
            stack.close()
            raise
        self._stack, self.filter, self.stats = stack, running, stats
        engine_name = engine.name if engine is not None else "passthrough"
        log.info("running: %s -> %s (%s)", input_description, output_description, engine_name)
        return FilterStatus(
            input=input_description,
            output=output_description,
            engine=engine.name if engine is not None else None,
            engine_error=engine_error,
            notes=tuple(notes),
        )

    def close(self) -> None:
        """Stop the filter and release the camera, detector and virtual camera (idempotent)."""
        self.filter = None
        stack, self._stack = self._stack, ExitStack()
        stack.close()
