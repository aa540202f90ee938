"""Wiring a whole camera filter from a few choices: what ``nasfe-cam run`` and the tray both open.

Resolves the input (webcam / device / file, or the embedded default: the webcam if one opens, else
the bundled sample clip with simulated degradations) and the output (virtual camera, preview,
video file, or the embedded default: the virtual camera if one opens, else a video file plus a
side-by-side PNG), then owns everything it opened.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path


from engine.enhancer import Enhancer
from facecam.capture import Capture, CaptureError, is_live, parse_source
from facecam.controls import PipelineControls
from facecam.detect import FaceDetector
from facecam.files import same_file
from facecam.pipeline import FramePipeline
from facecam.runner import CameraFilter
from facecam.simulate import FrameDegrader
from facecam.sinks import (
    VCAM_HINT,
    VIDEO_SUFFIXES,
    FrameSink,
    PreviewWindowSink,
    SideBySidePngSink,
    VideoFileSink,
    VirtualCameraSink,
    has_display,
)
from facecam.stats import PipelineStats

__all__ = ["SAMPLE_CLIP", "SessionOptions", "CameraSession", "SessionError"]

log = logging.getLogger(__name__)

#: 640x480 30 fps webcam clip, CC BY 4.0 "Intel IoT DevKit sample videos" (see assets/README.md).
SAMPLE_CLIP = Path(__file__).resolve().parent.parent / "assets" / "sample" / "webcam_sample.mkv"


class SessionError(RuntimeError):
    """An input or output that cannot be opened; the message says what to do (one line)."""


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (pyvirtualcam lists one line per backend tried)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else f"{type(exc).__name__}: no backend on this system"


@dataclass(frozen=True)
class SessionOptions:
    """What to open. ``None`` means the embedded default.

    Attributes:
        input: camera index (``"0"``), device path (``/dev/video2``) or video file; ``None``: the
            webcam if one opens, else :data:`SAMPLE_CLIP` with ``simulate="bnl"``.
        output: ``"vcam"``, ``"preview"`` or a video file path (``.mp4``, ``.avi``, ``.mkv``); ``None``:
            the virtual camera if one opens, else ``out_dir/nasfe_cam.mp4`` plus a side-by-side PNG.
        simulate: degradations applied to the input first (see :mod:`facecam.simulate`), or ``None``.
        loop: loop a video file; ``None``: loop only the default sample clip feeding a live output.
        max_frames: stop after this many frames; ``None``: run until the input ends or stop().
        out_dir: folder for the default file outputs.
        vcam_device: a specific virtual camera device, or ``None`` for the first free one.
        seed: seed of the degradation simulator.
        overwrite: replace an existing video file named by ``output`` (never the input itself).
    """

    input: str | None = None
    output: str | None = None
    simulate: str | None = None
    loop: bool | None = None
    max_frames: int | None = None
    out_dir: Path = Path("out")
    vcam_device: str | None = None
    seed: int = 0
    overwrite: bool = False


class CameraSession:
    """Opens input, pipeline and outputs from :class:`SessionOptions` and runs a :class:`CameraFilter`.

    Use as a context manager: entering starts the filter, leaving stops it and closes everything
    (video files are complete and in place afterwards).

    Args:
        enhancer: the engine.
        options: what to open.
        controls: live settings shared with a UI; a fresh :class:`PipelineControls` by default.
        detector: a face detector to use instead of opening the default one.

    Attributes:
        controls: the live settings (the one passed in, or a fresh one).
        stats: the run's :class:`PipelineStats` (shared by capture, pipeline and sender).
        filter: the running :class:`CameraFilter` (after entering).
        notes: one-line messages for the user about the defaults taken (e.g. the virtual-camera hint).
        input_description, output_description: what was opened, in words.
        expected_frames: how many frames the run will take, or ``None`` when it runs until stopped.

    Raises:
        SessionError: an input or output named explicitly cannot be opened.
    """

    def __init__(
        self,
        enhancer: Enhancer,
        options: SessionOptions = SessionOptions(),
        *,
        controls: PipelineControls | None = None,
        detector: FaceDetector | None = None,
    ) -> None:
        self.enhancer = enhancer
        self.options = options
        self.controls = controls or PipelineControls()
        self.stats = PipelineStats()
        self.notes: list[str] = []
        self.input_description = ""
        self.output_description = ""
        self._detector = detector
        self._stack = ExitStack()
        self.filter: CameraFilter | None = None
        self.expected_frames: int | None = None

    def __enter__(self) -> CameraSession:
        try:
            capture = self._open_input()
            try:
                sinks = self._open_outputs(capture)
            except BaseException:
                capture.close()
                raise
            if not capture.live and any(sink.live for sink in sinks):
                # a file feeding a live output stands in for a camera: paced, latest-frame, looping
                # if asked (the default sample clip loops)
                capture.close()
                capture = self._capture(realtime=True, loop=self._loop_when_live)
            self._stack.enter_context(capture)
            pipeline = FramePipeline(
                self.enhancer, detector=self._detector, controls=self.controls, stats=self.stats
            )
            self._stack.enter_context(pipeline)
            self.filter = CameraFilter(capture, pipeline, sinks, max_frames=self.options.max_frames)
            counts = [self.options.max_frames, None if capture.loop else capture.frame_count]
            self.expected_frames = min((c for c in counts if c is not None), default=None)
            self._stack.callback(self.filter.stop)
            self.filter.start()
        except BaseException as exc:  # half-opened: discard partial outputs, release what was opened
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop and close everything; outputs are kept even after Ctrl-C (stopping is normal use)."""
        self._stack.close()

    # -- input ---------------------------------------------------------------------------------

    def _open_input(self) -> Capture:
        """Resolve and open the input; a file is opened for lossless reading (see ``__enter__``)."""
        opts = self.options
        self._simulate = opts.simulate
        self._loop_when_live = bool(opts.loop)
        if opts.input is None:
            try:
                self._source: int | str = 0
                capture = self._capture(realtime=True, loop=False)
                self.input_description = "webcam 0"
                return capture
            except CaptureError:
                self._source = str(SAMPLE_CLIP)
                self._simulate = self._simulate or "bnl"
                self._loop_when_live = opts.loop is None or opts.loop
                self.notes.append(
                    f"no webcam opened: using the sample clip {SAMPLE_CLIP.name} "
                    f"with --simulate {self._simulate}"
                )
                self.input_description = f"sample clip {SAMPLE_CLIP.name}"
                return self._capture(realtime=False, loop=bool(opts.loop))
        self._source = parse_source(opts.input)
        live = is_live(self._source)
        if not live and not Path(self._source).is_file():  # type: ignore[arg-type]
            raise SessionError(
                f"input not found: {self._source} (expected a camera index, /dev/videoN or a video file)"
            )
        self.input_description = f"camera {self._source}" if live else f"video file {self._source}"
        try:
            return self._capture(realtime=live, loop=bool(opts.loop))
        except CaptureError as exc:
            raise SessionError(f"{exc} (try `nasfe-cam doctor`)") from exc

    def _capture(self, *, realtime: bool, loop: bool) -> Capture:
        degrader = None
        if self._simulate not in (None, "none"):
            degrader = FrameDegrader(kinds=self._simulate, seed=self.options.seed)  # type: ignore[arg-type]
        return Capture(self._source, loop=loop, realtime=realtime, transform=degrader, stats=self.stats)

    # -- outputs -------------------------------------------------------------------------------

    def _open_outputs(self, capture: Capture) -> list[FrameSink]:
        opts = self.options
        size = {"width": capture.width, "height": capture.height}
        preview_png = opts.out_dir / "nasfe_cam_preview.png"
        if opts.output in (None, "vcam"):
            try:
                vcam = VirtualCameraSink(**size, fps=capture.fps, device=opts.vcam_device)
            except (RuntimeError, ImportError) as exc:
                if opts.output == "vcam":
                    raise SessionError(
                        f"no virtual camera could be opened ({_first_line(exc)}); if one exists it may be "
                        f"busy: close the program using it or pick one with --vcam-device; to create one: {VCAM_HINT}"
                    ) from exc
                log.debug("virtual camera unavailable: %s", exc)
            else:
                self._stack.enter_context(vcam)
                self.output_description = f"virtual camera {vcam.device} ({vcam.backend})"
                return [vcam]
            video = opts.out_dir / "nasfe_cam.mp4"
            self.notes.append(
                f"no virtual camera: writing {video} and {preview_png}; to get one: {VCAM_HINT}"
            )
            self.output_description = f"{video} + {preview_png}"
            return [
                self._stack.enter_context(VideoFileSink(video, **size, fps=capture.fps)),
                self._stack.enter_context(SideBySidePngSink(preview_png)),
            ]
        if opts.output == "preview":
            if has_display():
                self.output_description = "preview window"
                return [self._stack.enter_context(PreviewWindowSink(on_quit=self._request_stop))]
            self.notes.append(f"no display: writing the side-by-side preview to {preview_png}")
            self.output_description = str(preview_png)
            return [self._stack.enter_context(SideBySidePngSink(preview_png))]
        path = Path(opts.output)
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise SessionError(
                f"unknown output {opts.output!r}: expected vcam, preview or a video file "
                f"({', '.join(VIDEO_SUFFIXES)})"
            )
        if not capture.live and same_file(path, self._source):  # type: ignore[arg-type]
            raise SessionError(f"output {path} is the input itself; choose another output")
        if path.exists() and not opts.overwrite:
            raise SessionError(f"{path} already exists; add --force to overwrite")
        self.output_description = str(path)
        try:
            return [self._stack.enter_context(VideoFileSink(path, **size, fps=capture.fps))]
        except OSError as exc:
            raise SessionError(str(exc)) from exc

    def _request_stop(self) -> None:
        if self.filter is not None:
            self.filter.request_stop()
