"""The fault matrix of issue 11: "a video call must not break because of this filter".

Each table below is one parametrised test; every row is named after the fault it injects and states
the outcome it expects. The filter runs for real (capture thread, pipeline, paced sender, the
pyvirtualcam ``Camera`` class); what is faked is the outside world: the camera (a scripted
``VideoSource``), the engine (test doubles, or a random-weight ``smoke`` network saved with
``engine.build.save_fused``), the face detector where the geometry must be exact, and the virtual
camera device (a backend registered with ``pyvirtualcam.register_backend``).

* ``STREAM_FAULTS``: camera unplugged (and back, or for good), driver errors, odd pixel formats;
  engine raising, NaN, wrong output; detector raising; virtual camera failing mid-call.
* ``FRAME_FAULTS``: no face, too many faces, faces at the frame edge or mostly outside, tiny faces,
  degenerate landmarks, odd / portrait / 4K / tiny frames, black and saturated frames.
* ``REAL_DETECTOR_FRAMES``: the same frame sizes and black / saturated frames through MediaPipe.
* ``ENGINE_FILE_FAULTS``: missing, truncated, corrupt weights or genotype; genotype of another derive
  or config; an identity prior that does not fit.
* ``VCAM_FAULTS``: virtual camera missing or busy, asked for explicitly or by default; no display.

The memory soak (a few thousand frames through the real pipeline) is at the end.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import pyvirtualcam
import torch

import facecam.capture
import facecam.commands.run
from engine.align import TEMPLATE4
from engine.build import build_fused, build_supernet, save_weights
from engine.configs import get_config
from engine.genotype import Genotype
from facecam.bench import fit_frame, load_clip, release_free_heap, rss_mb, soak
from facecam.cli import main
from facecam.controls import PipelineControls
from facecam.detect import Face, MediaPipeDetector
from facecam.pipeline import FramePipeline
from facecam.runner import CameraFilter
from facecam.session import CameraSession, SessionOptions
from facecam.stats import PipelineStats
from facecam.tray.providers import Providers
from facecam.tray.service import FilterChoice, FilterService

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "sample" / "webcam_sample.mkv"
H, W = 240, 320  # the scripted camera's frame size
FPS = 100.0  # the scripted camera's rate: the paced sender follows it, so each case takes a second or so
FACE = (110.0, 60.0, 100.0)  # (x0, y0, side) in pixels: the face square of the scripted camera's frames


# -- test doubles -------------------------------------------------------------------------------


def face_in_square(x0: float, y0: float, side: float) -> Face:
    """A face whose aligned crop is exactly the square ``[x0, x0 + side] x [y0, y0 + side]`` (pixels)."""
    return Face(box_px=(x0, y0, side, side), landmarks4_px=TEMPLATE4 * side + (x0, y0), score=0.9)


class FixedDetector:
    """Finds the given faces in every frame."""

    name = "test-fixed"

    def __init__(self, *faces: Face) -> None:
        self.faces = list(faces)

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[Face]:
        return list(self.faces)

    def close(self) -> None:
        pass


class RaisingDetector(FixedDetector):
    def detect(self, frame_bgr, timestamp_ms):
        raise RuntimeError("detector crashed")


class MirrorEngine:
    """An Enhancer that mirrors each crop left-right: a visible change that keeps the face's mean
    brightness, so the scene exposure stays at gain 1 and only the face region changes."""

    name = "test-mirror"

    def __init__(self, crop_size: int = 64) -> None:
        self.crop_size = crop_size
        self.batches: list[int] = []

    def enhance(self, crops, prior=None, identity=None):
        self.batches.append(len(crops))
        return np.ascontiguousarray(crops[:, :, ::-1])


class RaisingEngine(MirrorEngine):
    def enhance(self, crops, prior=None, identity=None):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


class NaNEngine(MirrorEngine):
    def enhance(self, crops, prior=None, identity=None):
        return np.full(crops.shape, np.nan, np.float32)


class WrongShapeEngine(MirrorEngine):
    def enhance(self, crops, prior=None, identity=None):
        return crops[:, ::2, ::2]


class EveryOtherCallFails(MirrorEngine):
    def enhance(self, crops, prior=None, identity=None):
        self.batches.append(len(crops))
        if len(self.batches) % 2 == 0:
            raise RuntimeError("engine hiccup")
        return np.ascontiguousarray(crops[:, :, ::-1])


class ScriptedCamera:
    """A ``VideoSource``: ``frames`` reads of ``image``, then every read fails (or raises, like some
    drivers do when the device is unplugged)."""

    def __init__(self, image: np.ndarray, frames: int = 10**9, *, raises: bool = False, opened: bool = True) -> None:
        self.image, self.left, self.raises, self.opened = image, frames, raises, opened

    def isOpened(self) -> bool:  # noqa: N802 -- OpenCV's name
        return self.opened

    def read(self):
        time.sleep(1 / (2 * FPS))
        if self.left <= 0 or not self.opened:
            if self.raises:
                raise cv2.error("VIDIOC_DQBUF: No such device")
            return False, None
        self.left -= 1
        return True, self.image

    def get(self, prop_id: int) -> float:
        return FPS if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.left = 0


class Unplugged:
    """An opener answer: the device is not there (opens closed)."""


class RecordingBackend:
    """A pyvirtualcam backend that keeps the frames it is sent; ``fail_after`` sends, it raises as a
    device that vanished would."""

    instances: list[RecordingBackend] = []
    fail_after: int | None = None

    def __init__(self, *, width, height, fps, fourcc, device, **kw) -> None:
        self.width, self.height = width, height
        self._device = device or "/dev/video-test"
        self.frames: list[np.ndarray] = []
        self.sends = 0
        RecordingBackend.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        """``frame``: the flat BGR bytes pyvirtualcam hands to its backends."""
        self.sends += 1
        if self.fail_after is not None and self.sends > self.fail_after:
            raise OSError(5, "Input/output error: /dev/video-test")
        self.frames.append(frame.reshape(self.height, self.width, 3).copy())

    def close(self) -> None:
        pass

    def device(self) -> str:
        return self._device

    def native_fourcc(self):
        return None


class BusyBackend(RecordingBackend):
    def __init__(self, **kw) -> None:
        raise RuntimeError("device /dev/video10 is busy (another program is sending to it)")


def textured(shape: tuple[int, ...], seed: int, marker: int | None = None) -> np.ndarray:
    """Seeded random uint8 texture; ``marker`` fills the top-left 8x8 block (far from any face)."""
    image = np.random.default_rng(seed).integers(30, 220, shape, dtype=np.uint8)
    if marker is not None:
        image[:8, :8] = marker
    return image


def device_frame(marker: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    return textured((*size, 3), seed=marker, marker=marker)


# -- the stream: camera, engine, detector and virtual camera faults while a call runs --------------


@dataclass
class StreamFault:
    """One row of the stream table.

    Attributes:
        devices: what successive opens of the camera give (a camera, :class:`Unplugged`, or an
            exception to raise); after the list, the camera stays unplugged.
        until: the run goes on until this holds for ``(stats snapshot, frames the vcam got)``.
        expect: the outcome, checked on the same values after the run.
        engine, detector: the doubles in use.
        vcam_fail_after: the virtual camera raises on every send after this many.
    """

    devices: Callable[[], list]
    until: Callable[[dict, list[np.ndarray]], bool]
    expect: Callable[[dict, list[np.ndarray]], bool]
    engine: Callable[[], MirrorEngine] = MirrorEngine
    detector: Callable[[], FixedDetector] = lambda: FixedDetector(face_in_square(*FACE))
    vcam_fail_after: int | None = None
    passthrough_warnings: int = 0  # "frame passed through unenhanced" lines expected in the log


def marker(frame: np.ndarray) -> int:
    return int(frame[0, 0, 0])


def all_passed_through(frames: list[np.ndarray]) -> bool:
    """Every frame the virtual camera got is the camera's frame, untouched."""
    return bool(frames) and all(np.array_equal(f, device_frame(marker(f))) for f in frames)


def engine_fails_on_every_frame(engine: Callable[[], MirrorEngine]) -> StreamFault:
    """Every frame of a steady camera must pass through untouched, with one warning."""
    return StreamFault(
        devices=lambda: [ScriptedCamera(device_frame(10))],
        engine=engine,
        until=lambda s, f: s["frames_processed"] >= 30,
        expect=lambda s, f: s["enhance_errors"] == s["frames_processed"] and all_passed_through(f),
        passthrough_warnings=1,
    )


STREAM_FAULTS: dict[str, StreamFault] = {
    "camera_unplugged_mid_stream_then_back": StreamFault(
        devices=lambda: [
            ScriptedCamera(device_frame(10), 20), Unplugged(), Unplugged(), ScriptedCamera(device_frame(200))
        ],
        until=lambda s, f: s["reconnects"] == 1 and marker(f[-1]) == 200 and s["frames_processed"] >= 40,
        # the gap was bridged by repeating the last frame; then fresh frames from the new device
        expect=lambda s, f: s["frames_repeated"] > 0 and {marker(x) for x in f} == {10, 200},
    ),
    "camera_unplugged_for_good": StreamFault(
        devices=lambda: [ScriptedCamera(device_frame(10), 20)],
        until=lambda s, f: not s["source_connected"] and s["frames_repeated"] >= 30,
        # output keeps flowing: the last good frame, again and again
        expect=lambda s, f: s["frames_captured"] == 20 and all(np.array_equal(x, f[-1]) for x in f[-30:]),
    ),
    "camera_driver_raises_when_unplugged": StreamFault(
        devices=lambda: [ScriptedCamera(device_frame(10), 20, raises=True), ScriptedCamera(device_frame(200))],
        until=lambda s, f: s["reconnects"] == 1 and marker(f[-1]) == 200,
        expect=lambda s, f: {marker(x) for x in f} == {10, 200},
    ),
    "camera_reopen_raises_then_works": StreamFault(
        devices=lambda: [
            ScriptedCamera(device_frame(10), 20), OSError("device busy"), ScriptedCamera(device_frame(200))
        ],
        until=lambda s, f: s["reconnects"] == 1 and marker(f[-1]) == 200,
        expect=lambda s, f: {marker(x) for x in f} == {10, 200},
    ),
    "camera_returns_at_another_resolution": StreamFault(
        devices=lambda: [ScriptedCamera(device_frame(10), 20), ScriptedCamera(device_frame(200, (480, 640)))],
        until=lambda s, f: s["reconnects"] == 1 and marker(f[-1]) == 200,
        expect=lambda s, f: s["frames_enhanced"] > 20,  # resized to the call's size and still enhanced
    ),
    "camera_sends_grey_frames": StreamFault(
        devices=lambda: [ScriptedCamera(np.ascontiguousarray(device_frame(10)[..., 0]))],
        until=lambda s, f: s["frames_processed"] >= 30,
        expect=lambda s, f: s["frames_enhanced"] == s["frames_processed"] and marker(f[-1]) == 10,
    ),
    "camera_sends_bgra_frames": StreamFault(
        devices=lambda: [ScriptedCamera(cv2.cvtColor(device_frame(10), cv2.COLOR_BGR2BGRA))],
        until=lambda s, f: s["frames_processed"] >= 30,
        expect=lambda s, f: s["frames_enhanced"] == s["frames_processed"] and marker(f[-1]) == 10,
    ),
    "engine_raises": engine_fails_on_every_frame(RaisingEngine),
    "engine_returns_nan": engine_fails_on_every_frame(NaNEngine),
    "engine_returns_wrong_shape": engine_fails_on_every_frame(WrongShapeEngine),
    "engine_fails_every_other_frame": StreamFault(
        devices=lambda: [ScriptedCamera(device_frame(10))],
        engine=EveryOtherCallFails,
        until=lambda s, f: s["frames_processed"] >= 30,
        expect=lambda s, f: 0 < s["enhance_errors"] < s["frames_processed"] and s["frames_enhanced"] > 0,
        passthrough_warnings=1,
    ),
    "detector_raises": StreamFault(
        devices=lambda: [ScriptedCamera(device_frame(10))],
        detector=RaisingDetector,
        until=lambda s, f: s["frames_processed"] >= 30,
        expect=lambda s, f: s["enhance_errors"] == s["frames_processed"] and all_passed_through(f),
        passthrough_warnings=1,
    ),
    "virtual_camera_fails_mid_stream": StreamFault(
        devices=lambda: [ScriptedCamera(device_frame(10))],
        vcam_fail_after=10,
        until=lambda s, f: s["frames_processed"] >= 40 and s["sink_errors"] >= 10,
        expect=lambda s, f: len(f) == 10 and s["frames_enhanced"] == s["frames_processed"],
    ),
}


@pytest.fixture
def vcam(monkeypatch):
    """An emptied pyvirtualcam registry; register backends with ``pyvirtualcam.register_backend``."""
    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {})
    monkeypatch.setattr(RecordingBackend, "fail_after", None)
    RecordingBackend.instances.clear()
    return RecordingBackend.instances


def scripted_opener(devices: list) -> Callable[[int | str], object]:
    def open_video(source):
        step = devices.pop(0) if devices else Unplugged()
        if isinstance(step, Exception):
            raise step
        return ScriptedCamera(np.zeros((H, W, 3), np.uint8), opened=False) if isinstance(step, Unplugged) else step

    return open_video


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``condition``; fail after ``timeout_s`` (a bound for a stuck run, not a timing test)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("fault", list(STREAM_FAULTS))
def test_stream_fault(fault, vcam, monkeypatch, caplog):
    """Whatever fails mid-call, the virtual camera keeps getting frames of the call's size and the
    filter keeps running; each row states what else happens."""
    case = STREAM_FAULTS[fault]
    monkeypatch.setattr(facecam.capture, "open_video", scripted_opener(case.devices()))
    monkeypatch.setattr(RecordingBackend, "fail_after", case.vcam_fail_after)
    pyvirtualcam.register_backend("recording", RecordingBackend)
    options = SessionOptions(input="0", output="vcam")
    with caplog.at_level(logging.WARNING, logger="facecam"):
        with CameraSession(case.engine(), options, detector=case.detector()) as session:
            (cam,) = vcam
            wait_until(lambda: case.until(session.stats.snapshot(), cam.frames), fault)
            still_running = session.filter.running
        snap = session.stats.snapshot()
    assert still_running, "the filter stopped"
    assert cam.frames and all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in cam.frames)
    assert case.expect(snap, cam.frames), snap
    passthrough = [r for r in caplog.records if "passed through unenhanced" in r.getMessage()]
    assert len(passthrough) == case.passthrough_warnings  # logged once, not once per frame


def test_engine_warning_is_logged_once_then_counted(caplog):
    """A failing engine is reported once, then again only after the throttle interval, with a count."""
    frame = device_frame(10)
    with caplog.at_level(logging.WARNING, logger="facecam"), FramePipeline(
        RaisingEngine(), detector=FixedDetector(face_in_square(*FACE))
    ) as pipeline:
        results = [pipeline.process(frame, i / 30) for i in range(50)]
        pipeline._throttle._interval_s = 0.0  # the interval has passed: the next report says how many were held back
        pipeline.process(frame, 51 / 30)
    messages = [r.getMessage() for r in caplog.records if "passed through unenhanced" in r.getMessage()]
    assert all(r.image_bgr is frame and "illegal memory access" in r.error for r in results)
    assert len(messages) == 2 and "(49 more since the last report)" in messages[1]


# -- one frame: content and geometry ------------------------------------------------------------


@dataclass
class FrameFault:
    """One row of the frame table: a frame of ``size = (width, height)`` filled by ``fill`` with faces
    in the squares ``(x0, y0, side)``; ``enhanced`` / ``error`` / ``batch`` are the expected outcome.
    Every row also checks: same shape and dtype out, and no pixel changed outside the face squares."""

    size: tuple[int, int]
    faces: list[tuple[float, float, float]] = field(default_factory=list)
    fill: str = "texture"  # texture, black or white
    enhanced: bool = True
    error: str | None = None
    batch: int | None = None  # faces in the one engine call (None: as many as faces, none if none)
    landmarks: np.ndarray | None = None  # overrides the faces' landmarks (degenerate points)
    visible: bool | None = None  # whether the output differs; default: enhanced and textured


FRAME_FAULTS: dict[str, FrameFault] = {
    "no_face": FrameFault((320, 240), [], enhanced=False),
    "many_faces_capped_at_four": FrameFault(
        (640, 480), [(10 + 70 * i, 10 + 50 * (i % 3), 60 - 3 * i) for i in range(9)], batch=4
    ),
    "face_at_left_edge": FrameFault((320, 240), [(-40, 60, 100)]),
    "face_at_right_edge": FrameFault((320, 240), [(260, 60, 100)]),
    "face_at_top_edge": FrameFault((320, 240), [(110, -45, 100)]),
    "face_at_bottom_corner": FrameFault((320, 240), [(250, 180, 100)]),
    "face_mostly_outside": FrameFault((320, 240), [(-90, -90, 100)], visible=False),  # only its corner shows
    "face_fully_outside": FrameFault((320, 240), [(400, 300, 60)], visible=False),
    "tiny_face": FrameFault((320, 240), [(150, 100, 6)]),
    "degenerate_landmarks": FrameFault(
        (320, 240), [(110, 60, 100)], enhanced=False, error="degenerate landmarks", landmarks=np.full((4, 2), 150.0)
    ),
    "odd_width_and_height": FrameFault((641, 481), [(201, 101, 151)]),
    "portrait_frame": FrameFault((480, 640), [(140, 200, 200)]),
    "frame_4k": FrameFault((3840, 2160), [(1500, 600, 900)]),
    "tiny_frame": FrameFault((17, 13), [(0, 0, 13)]),
    "black_frame": FrameFault((320, 240), [(110, 60, 100)], fill="black"),
    "saturated_frame": FrameFault((320, 240), [(110, 60, 100)], fill="white"),
}


def make_frame(size: tuple[int, int], fill: str) -> np.ndarray:
    w, h = size
    return {"black": lambda: np.zeros((h, w, 3), np.uint8), "white": lambda: np.full((h, w, 3), 255, np.uint8)}.get(
        fill, lambda: textured((h, w, 3), seed=w * h)
    )()


def outside_squares(shape: tuple[int, ...], squares: list[tuple[float, float, float]], margin: int = 2) -> np.ndarray:
    """``(H, W)`` bool: True away from every face square (plus ``margin`` pixels for bilinear edges)."""
    keep = np.ones(shape[:2], bool)
    for x0, y0, side in squares:
        ys = slice(max(0, int(np.floor(y0)) - margin), max(0, int(np.ceil(y0 + side)) + margin))
        xs = slice(max(0, int(np.floor(x0)) - margin), max(0, int(np.ceil(x0 + side)) + margin))
        keep[ys, xs] = False
    return keep


@pytest.mark.parametrize("fault", list(FRAME_FAULTS))
def test_frame_fault(fault):
    case = FRAME_FAULTS[fault]
    frame = make_frame(case.size, case.fill)
    faces = [face_in_square(*sq) for sq in case.faces]
    if case.landmarks is not None:
        faces = [Face(f.box_px, case.landmarks, f.score) for f in faces]
    engine = MirrorEngine()
    with FramePipeline(engine, detector=FixedDetector(*faces)) as pipeline:
        result = pipeline.process(frame, 0.0)
    out = result.image_bgr
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert result.enhanced == case.enhanced
    assert (result.error is None) if case.error is None else (case.error in result.error)
    expected_batch = case.batch if case.batch is not None else len(faces)
    assert engine.batches == ([expected_batch] if case.enhanced else [])
    if not case.enhanced:
        assert out is frame
    # nothing changes away from the enhanced faces (the largest four when there are more)
    enhanced_squares = sorted(case.faces, key=lambda sq: -sq[2])[: expected_batch]
    away = outside_squares(out.shape, enhanced_squares)
    assert np.array_equal(out[away], frame[away])
    visible = case.visible if case.visible is not None else case.enhanced and case.fill == "texture"
    assert np.array_equal(out, frame) != visible  # the face changed where its mirror image differs


@pytest.fixture(scope="module")
def detector():
    with MediaPipeDetector() as det:
        yield det


@pytest.fixture(scope="module")
def sample_frame() -> np.ndarray:
    return load_clip(SAMPLE)[0]


REAL_DETECTOR_FRAMES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], bool]] = {
    # name: (frame from the sample clip's first frame, is a face expected)
    "odd_width_and_height": (lambda f: fit_frame(f, (641, 481)), True),
    "portrait_frame": (lambda f: fit_frame(f, (480, 640)), True),
    "frame_4k": (lambda f: fit_frame(f, (3840, 2160)), True),
    "tiny_frame": (lambda f: fit_frame(f, (48, 36)), None),  # found or not: never an error
    "black_frame": (lambda f: np.zeros_like(f), False),
    "saturated_frame": (lambda f: np.full_like(f, 255), False),
}


@pytest.mark.parametrize("fault", list(REAL_DETECTOR_FRAMES))
def test_frame_fault_with_the_real_detector(fault, detector, sample_frame):
    make, face_expected = REAL_DETECTOR_FRAMES[fault]
    frame = make(sample_frame)
    with FramePipeline(MirrorEngine(), detector=detector) as pipeline:
        result = pipeline.process(frame, 0.0)
    assert result.error is None and result.image_bgr.shape == frame.shape and result.image_bgr.dtype == np.uint8
    if face_expected is not None:
        assert result.enhanced == face_expected == bool(result.faces)
    if not result.enhanced:
        assert result.image_bgr is frame


# -- engine files: weights, genotype, identity prior ----------------------------------------------


@pytest.fixture(scope="module")
def engine_files(tmp_path_factory, smoke_engine) -> Path:
    """The shared ``smoke`` engine files plus a genotype of another config and weights without metadata."""
    folder = tmp_path_factory.mktemp("engine")
    shutil.copytree(smoke_engine, folder, dirs_exist_ok=True)
    other = Genotype.load(folder / "other.json")
    build_supernet("rt", seed=0).derive().save(folder / "other_config.json")
    save_weights(build_fused(other, seed=3).eval(), folder / "bare_other.safetensors")  # no metadata
    return folder


def _copy_engine(
    src: Path, dst: Path, *, genotype: str | None = "genotype.json", weights: str = "weights.safetensors"
) -> Path:
    dst.mkdir()
    shutil.copy(src / weights, dst / "weights.safetensors")
    if genotype is not None:
        shutil.copy(src / genotype, dst / "genotype.json")
    return dst / "weights.safetensors"


def _damage(path: Path, how: str) -> Path:
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "corrupt": np.random.default_rng(0).bytes(len(data)),
        "empty": b"",
    }[how]
    path.write_bytes(damaged)
    return path


def _weights_case(how: str) -> Callable[[Path, Path], tuple[list[str], Path]]:
    def build(src: Path, tmp: Path) -> tuple[list[str], Path]:
        weights = _damage(_copy_engine(src, tmp / "engine"), how)
        return ["--weights", str(weights)], weights

    return build


def _genotype_case(how: str) -> Callable[[Path, Path], tuple[list[str], Path]]:
    def build(src: Path, tmp: Path) -> tuple[list[str], Path]:
        weights = _copy_engine(src, tmp / "engine")
        return ["--weights", str(weights)], _damage(weights.with_name("genotype.json"), how)

    return build


def _mismatch_case(
    genotype: str | None, weights: str = "weights.safetensors"
) -> Callable[[Path, Path], tuple[list[str], Path]]:
    def build(src: Path, tmp: Path) -> tuple[list[str], Path]:
        path = _copy_engine(src, tmp / "engine", genotype=genotype, weights=weights)
        return ["--weights", str(path)], path

    return build


def _identity_case(content: Callable[[Path], None]) -> Callable[[Path, Path], tuple[list[str], Path]]:
    def build(src: Path, tmp: Path) -> tuple[list[str], Path]:
        weights = _copy_engine(src, tmp / "engine")
        identity = tmp / "me.npy"
        content(identity)
        return ["--weights", str(weights), "--identity", str(identity)], identity

    return build


# name: (files builder -> (extra argv, the file the error must name), words the error must contain)
ENGINE_FILE_FAULTS: dict[str, tuple[Callable[[Path, Path], tuple[list[str], Path]], str]] = {
    "weights_missing": (
        lambda src, tmp: (["--weights", str(tmp / "none.safetensors")], tmp / "none.safetensors"), "not found"
    ),
    "weights_truncated": (_weights_case("truncated"), "corrupt or unreadable weights file"),
    "weights_corrupt": (_weights_case("corrupt"), "corrupt or unreadable weights file"),
    "weights_empty": (_weights_case("empty"), "corrupt or unreadable weights file"),
    "genotype_missing": (_mismatch_case(None, "bare_other.safetensors"), "records no genotype"),
    "genotype_truncated": (_genotype_case("truncated"), "genotype file"),
    "genotype_corrupt": (_genotype_case("corrupt"), "genotype file"),
    "genotype_empty": (_genotype_case("empty"), "genotype file"),
    "genotype_of_another_derive": (_mismatch_case("other.json"), "saved for another genotype"),
    "genotype_of_another_config": (_mismatch_case("other_config.json"), "saved for another genotype"),
    "weights_without_metadata_of_another_derive": (
        _mismatch_case("genotype.json", "bare_other.safetensors"), "does not match the network"
    ),
    "identity_prior_of_another_shape": (
        _identity_case(lambda p: np.save(p, np.zeros((64, 9, 9), np.float32))), "does not fit the engine"
    ),
    "identity_prior_truncated": (
        _identity_case(lambda p: (np.save(p, np.zeros((128, 8, 8), np.float32)), _damage(p, "truncated"))),
        "cannot read identity prior",
    ),
    "identity_prior_not_an_array": (_identity_case(lambda p: p.write_bytes(b"\x80\x04K\x01.")), "not a .npy array"),
}


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors
        return int(exc.code)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Run in ``tmp_path`` with the engine cache there and no webcam."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NASFE_CAM_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("fault", list(ENGINE_FILE_FAULTS))
def test_engine_file_fault(fault, engine_files, isolated, capfd):
    """A bad engine file: one line naming the file, exit 2, no traceback, no output written."""
    build, words = ENGINE_FILE_FAULTS[fault]
    extra, named = build(engine_files, isolated)
    out = isolated / "out.avi"
    code = run_cli(["run", "--input", str(SAMPLE), "--output", str(out), "--frames", "2", "--backend", "torch", *extra])
    err = capfd.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert words in err and str(named) in err, err
    assert not out.exists()


def test_the_engine_files_are_loadable_when_intact(engine_files, isolated, capfd):
    """The control row: the same files, undamaged, run (so the faults above are what fails)."""
    weights = _copy_engine(engine_files, isolated / "engine")
    smoke = get_config("smoke")
    np.save(isolated / "me.npy", np.zeros((smoke.id_channels, smoke.id_size, smoke.id_size), np.float32))
    out = isolated / "out.avi"
    argv = ["run", "--input", str(SAMPLE), "--output", str(out), "--frames", "2", "--backend", "torch",
            "--weights", str(weights), "--identity", str(isolated / "me.npy")]
    assert run_cli(argv) == 0, capfd.readouterr().err
    assert out.is_file()


def test_a_real_backend_producing_nan_passes_the_frame_through(engine_files):
    from engine.build import load_fused
    from engine.runtime import create_enhancer

    net = load_fused(engine_files / "genotype.json", engine_files / "weights.safetensors", fuse=True)
    with torch.no_grad():
        next(p for name, p in net.named_parameters() if name.startswith("decoder")).fill_(float("nan"))
    enhancer = create_enhancer(net, "torch", threads=1)
    frame = device_frame(10)
    with FramePipeline(enhancer, detector=FixedDetector(face_in_square(*FACE))) as pipeline:
        result = pipeline.process(frame, 0.0)
    assert result.image_bgr is frame and result.error is not None


# -- the virtual camera: missing or busy -----------------------------------------------------------


# name: (pyvirtualcam backend or None, --output, expected exit code, words on stderr or stdout)
VCAM_FAULTS: dict[str, tuple[type | None, str | None, int, tuple[str, ...]]] = {
    "vcam_missing_asked_for": (None, "vcam", 2, ("no virtual camera could be opened", "sudo modprobe v4l2loopback")),
    "vcam_busy_asked_for": (BusyBackend, "vcam", 2, ("is busy", "--vcam-device")),
    "vcam_missing_by_default_falls_back_to_file_and_preview": (None, None, 0, ("no virtual camera: writing",)),
    "vcam_busy_by_default_falls_back_to_file_and_preview": (BusyBackend, None, 0, ("no virtual camera: writing",)),
    "vcam_present": (RecordingBackend, "vcam", 0, ("virtual camera /dev/video-test",)),
    "preview_without_display_writes_a_png": (None, "preview", 0, ("no display: writing the side-by-side preview",)),
}


@pytest.mark.parametrize("fault", list(VCAM_FAULTS))
def test_virtual_camera_fault(fault, vcam, isolated, monkeypatch, capfd):
    backend, output, code, words = VCAM_FAULTS[fault]
    monkeypatch.setattr(facecam.commands.run, "load_engine", lambda backend, weights: MirrorEngine())
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if backend is not None:
        pyvirtualcam.register_backend("test", backend)
    argv = ["run", "--input", str(SAMPLE), "--frames", "3"] + (["--output", output] if output else [])
    assert run_cli(argv) == code
    captured = capfd.readouterr()
    text = captured.err if code else captured.out
    assert all(w in text for w in words), text
    if code:
        assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
        assert not (isolated / "out").exists()
    elif output is None:  # the fallback outputs are complete files
        assert cv2.VideoCapture(str(isolated / "out" / "nasfe_cam.mp4")).read()[0]
        assert cv2.imread(str(isolated / "out" / "nasfe_cam_preview.png")) is not None
    elif output == "preview":
        assert cv2.imread(str(isolated / "out" / "nasfe_cam_preview.png")) is not None
    else:
        assert vcam[0].frames and all(f.shape == (480, 640, 3) for f in vcam[0].frames)


def test_tray_falls_back_to_preview_when_the_virtual_camera_is_busy():
    """The tray's filter service keeps the preview running and says why there is no virtual camera."""

    def busy(width, height, fps, device):
        BusyBackend()

    class Sink:
        live = True

        def __init__(self) -> None:
            self.frames = 0

        def send(self, frame_bgr, source_bgr):
            self.frames += 1

        def close(self):
            pass

    def capture(spec: str, stats: PipelineStats):
        cap = facecam.capture.Capture(0, opener=lambda s: ScriptedCamera(device_frame(10)), stats=stats)
        return cap, "scripted camera"

    sink = Sink()
    providers = Providers(
        load_engine=MirrorEngine, open_capture=capture, open_detector=lambda: FixedDetector(face_in_square(*FACE)),
        open_vcam=busy, list_cameras=list, enroll=lambda crops: np.zeros((128, 8, 8), np.float32),
    )
    service = FilterService(PipelineControls(), sink, providers)
    try:
        status = service.open(FilterChoice(camera="0", output="vcam"))
        wait_until(lambda: sink.frames >= 10, "preview frames")
    finally:
        service.close()
    assert status.output == "preview only (no virtual camera)"
    assert any("is busy" in note and "modprobe" in note for note in status.notes)


# -- long runs: memory stays flat ----------------------------------------------------------------


def _mb_per_1000_frames(result: dict, skip: int = 2) -> float:
    """Least-squares RSS growth per 1000 frames over the soak's samples (the first ``skip`` are warm-up)."""
    samples = result["samples"][skip:]
    frames = np.array([s["frames"] for s in samples], float)
    rss = np.array([s["rss_mb"] for s in samples])
    return float(np.polyfit(frames, rss, 1)[0] * 1000.0)


class LeakyPipeline(FramePipeline):
    """The real pipeline, plus the bug a soak exists to catch: it keeps every output frame."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kept: list[np.ndarray] = []

    def process(self, frame_bgr, t_s):
        result = super().process(frame_bgr, t_s)
        self.kept.append(result.image_bgr.copy())
        return result


#: RSS growth that counts as a leak, in MB per 1000 frames; a 160x120 frame kept per frame is 57.
#: Only growth counts: the heap that earlier tests in the same process leave behind can be handed
#: back to the OS during a soak, which reads as a negative slope and is not a leak.
LEAK_BOUND_MB_PER_1000_FRAMES = 2.0


@pytest.mark.slow
def test_short_soak_memory_stays_flat(detector):
    """``nasfe-cam bench --soak`` in small: the real pipeline (MediaPipe, tracking, blending) with a
    test engine on 160x120 frames of the sample clip for 15 s (a few thousand frames on an idle
    machine): RSS must not grow with the frame count. A leaky pipeline over the same frames shows
    the bound catches a leak."""
    frames = [fit_frame(f, (160, 120)) for f in load_clip(SAMPLE)]
    healthy = soak(MirrorEngine(32), frames, 0.25, samples=10,
                   pipeline_factory=lambda e: FramePipeline(e, detector=detector))
    leaky = soak(MirrorEngine(32), frames, 0.05, samples=6,
                 pipeline_factory=lambda e: LeakyPipeline(e, detector=detector))
    assert healthy["frames"] > 500 and all(s["latency_p95_ms"] > 0 for s in healthy["samples"])
    assert _mb_per_1000_frames(healthy) < LEAK_BOUND_MB_PER_1000_FRAMES, healthy["samples"]
    assert _mb_per_1000_frames(leaky, skip=1) > 10 * LEAK_BOUND_MB_PER_1000_FRAMES, leaky["samples"]


class RssSampler:
    """A file-like (not live) sink that samples the process's RSS every ``every`` frames."""

    live = False

    def __init__(self, every: int) -> None:
        self.every, self.frames, self.samples = every, 0, []

    def send(self, frame_bgr, source_bgr):
        self.frames += 1
        if self.frames % self.every == 0:
            release_free_heap()
            self.samples.append({"frames": self.frames, "rss_mb": rss_mb()})

    def close(self):
        pass


@pytest.mark.slow
def test_short_soak_of_the_threaded_filter_memory_stays_flat():
    """The running filter (capture thread, bounded queues, frame thread, sender) over 3000 frames of a
    camera that never waits: RSS must not grow with the frame count either."""

    class FastCamera(ScriptedCamera):
        def read(self):
            return True, self.image

    sampler = RssSampler(every=250)
    stats = PipelineStats()
    capture = facecam.capture.Capture(0, opener=lambda s: FastCamera(device_frame(10, (120, 160))),
                                      realtime=False, stats=stats)
    pipeline = FramePipeline(MirrorEngine(32), detector=FixedDetector(face_in_square(40, 20, 60)), stats=stats)
    with capture, pipeline, CameraFilter(capture, pipeline, [sampler], max_frames=3000) as running:
        assert running.wait(300)
    assert sampler.frames == 3000 and stats.value("frames_enhanced") == 3000
    assert _mb_per_1000_frames({"samples": sampler.samples}) < LEAK_BOUND_MB_PER_1000_FRAMES, sampler.samples
