"""The tray app, offscreen: menu/window controls reach the running filter, settings persist, the
preview shows camera frames, the engine can be missing, and the reference photos stay private.

The filter runs for real (capture, pipeline, sender threads); the engine, camera and detector are
test doubles except where a test says otherwise.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt loads: no display, and no system tray

import cv2
import numpy as np
import pytest
from PyQt6.QtCore import QEventLoop
from PyQt6.QtWidgets import QApplication

from engine.errors import UserError
from facecam.capture import Capture, CaptureError
from facecam.detect import Face, MediaPipeDetector
from facecam.session import SAMPLE_CLIP
from facecam.simulate import FrameDegrader
from facecam.stats import PipelineStats
from facecam.tray.app import TrayApp
from facecam.tray.devices import CameraOption, list_cameras, list_virtual_cameras
from facecam.tray.enrol import EnrolmentCollector, assess
from facecam.tray.providers import Providers
from facecam.tray.references import REFERENCE_FILES, ReferenceStore
from facecam.tray.settings import SettingsStore, TraySettings

S = 128
H, W = 480, 640


# -- test doubles -------------------------------------------------------------------------------


class InvertEngine:
    """An Enhancer that inverts each crop (an unmistakable change) and records what it was given."""

    crop_size = S
    name = "test-invert"

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray | None, np.ndarray | None]] = []

    def enhance(self, crops, prior=None, identity=None):
        self.calls.append((prior, identity))
        return 255 - crops


class FakeCamera:
    """A VideoSource double: textured 480x640 BGR frames with a bright square moving each frame.

    ``read`` blocks for a 60th of a second, as a camera does, so the capture thread does not spin.
    """

    def __init__(self) -> None:
        self.index = 0
        self.base = np.random.default_rng(0).integers(40, 200, (H, W, 3), dtype=np.uint8)

    def isOpened(self) -> bool:  # noqa: N802 -- OpenCV's name
        return True

    def read(self):
        time.sleep(1 / 60)
        self.index += 1
        frame = self.base.copy()
        x = (self.index * 9) % (W - 80)
        frame[380:460, x : x + 80] = 255
        return True, frame

    def get(self, prop_id: int) -> float:
        return 30.0 if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


class FixedFaceDetector:
    """Finds one face, always at the same place (pixels)."""

    name = "test-fixed"
    face = Face(
        box_px=(220.0, 120.0, 200.0, 220.0),
        landmarks4_px=np.array([[280.0, 190.0], [360.0, 190.0], [320.0, 240.0], [320.0, 290.0]]),
        score=0.9,
    )

    def detect(self, frame_bgr, timestamp_ms):
        return [self.face]

    def close(self):
        pass


def fake_capture(spec: str, stats: PipelineStats) -> tuple[Capture, str]:
    if spec == "broken":
        raise CaptureError("cannot read from camera broken: it did not open or gave no frame")
    return Capture(0, opener=lambda _: FakeCamera(), realtime=True, stats=stats), f"fake camera {spec}"


def no_vcam(width, height, fps, device):
    raise RuntimeError("no virtual camera in tests")


def fake_enroll(crops_rgb: np.ndarray) -> np.ndarray:
    return np.ones((128, 8, 8), np.float32)


def providers(engine: InvertEngine | None = None, **changes) -> Providers:
    def load_engine():
        if engine is None:
            raise UserError("the enhancement engine is not available (no weights shipped)")
        return engine

    base = dict(
        load_engine=load_engine,
        open_capture=fake_capture,
        open_detector=FixedFaceDetector,
        open_vcam=no_vcam,
        list_cameras=lambda: [CameraOption("fake0", "Fake camera 0"), CameraOption("fake1", "Fake camera 1")],
        enroll=fake_enroll,
    )
    return Providers(**{**base, **changes})


# -- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def qapp():
    app = QApplication.instance() or QApplication(["test-tray"])
    yield app


@pytest.fixture
def make_app(qapp, tmp_path):
    """``make_app(providers, **kwargs)`` -> a shown TrayApp with its config in ``tmp_path/config``; shut down after."""
    apps: list[TrayApp] = []

    def make(prov: Providers, **kwargs) -> TrayApp:
        kwargs.setdefault("config", tmp_path / "config")
        kwargs.setdefault("camera", None)
        app = TrayApp(prov, **kwargs)
        apps.append(app)
        app.show()
        return app

    yield make
    for app in apps:
        app.shutdown()
    qapp.processEvents()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Process Qt events until ``condition()`` holds; fail after ``timeout_s`` (a bound, not a timing test)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.005)


def running(app: TrayApp) -> None:
    wait_until(lambda: app.filter_status is not None and app.bridge.frames_sent > 0, "the filter to run")


def latest_pair_identical(app: TrayApp) -> bool:
    pair = app.bridge.take()
    return pair is not None and np.array_equal(pair[0], pair[1])


def latest_pair_differs(app: TrayApp) -> bool:
    pair = app.bridge.take()
    return pair is not None and not np.array_equal(pair[0], pair[1])


# -- controls reach the pipeline ------------------------------------------------------------------


def test_enable_toggle_reaches_the_pipeline(make_app):
    app = make_app(providers(InvertEngine()), tray_available=True)
    running(app)
    assert app.tray is not None and app.window is None
    assert app.controls.enabled and app.enable_action.isChecked()
    wait_until(lambda: latest_pair_differs(app), "an enhanced frame")
    wait_until(lambda: app.state == "on", "the on state")
    on_icon = app.tray.icon().pixmap(32, 32).toImage()

    app.enable_action.trigger()  # what clicking the menu entry does
    assert app.controls.enabled is False
    wait_until(lambda: latest_pair_identical(app), "frames passed through after disabling")
    assert app.state == "off"
    assert app.tray.icon().pixmap(32, 32).toImage() != on_icon

    app.enable_action.trigger()
    assert app.controls.enabled is True
    wait_until(lambda: latest_pair_differs(app), "enhanced frames again")


def test_strength_slider_reaches_the_pipeline(make_app):
    app = make_app(providers(InvertEngine()), tray_available=True)
    running(app)
    app.strength_slider.slider.setValue(35)
    assert app.controls.strength == pytest.approx(0.35)
    assert app.strength_slider.value_label.text() == "35%"
    app.strength_slider.slider.setValue(0)
    assert app.controls.strength == 0.0
    wait_until(lambda: latest_pair_identical(app), "untouched frames at strength 0")
    assert app.state == "off"
    app.strength_slider.slider.setValue(100)
    wait_until(lambda: latest_pair_differs(app), "enhanced frames at strength 100%")


def test_mode_choice_reaches_the_pipeline_and_the_engine(make_app):
    engine = InvertEngine()
    app = make_app(providers(engine), tray_available=True)
    running(app)
    assert app.mode_group.isExclusive()
    app.mode_actions["lowlight"].trigger()
    assert app.controls.mode == "lowlight"
    assert [k for k, a in app.mode_actions.items() if a.isChecked()] == ["lowlight"]
    lowlight = np.array([[0.0, 0.0, 1.0]], np.float32)
    wait_until(lambda: engine.calls and np.array_equal(engine.calls[-1][0], lowlight), "the engine to get the low-light prior")
    app.mode_actions["auto"].trigger()
    assert app.controls.mode == "auto"
    wait_until(lambda: engine.calls[-1][0] is None, "the engine to be asked to classify (auto)")


# -- settings -------------------------------------------------------------------------------------


def test_settings_survive_a_restart(make_app, tmp_path):
    first = make_app(providers(InvertEngine()), tray_available=True)
    running(first)
    first.enable_action.trigger()
    first.strength_slider.slider.setValue(35)
    first.mode_actions["denoise"].trigger()
    first.camera_actions["fake1"].trigger()
    next(a for a in first._output_group.actions() if a.data() == ("off", None)).trigger()
    first.shutdown()

    saved = json.loads((tmp_path / "config" / "settings.json").read_text())
    assert saved["strength"] == pytest.approx(0.35) and saved["camera"] == "fake1"

    second = make_app(providers(InvertEngine()), tray_available=True)
    snap = second.controls.snapshot()
    assert (snap.enabled, snap.strength, snap.mode) == (False, pytest.approx(0.35), "denoise")
    assert not second.enable_action.isChecked()
    assert second.strength_slider.slider.value() == 35
    assert second.mode_actions["denoise"].isChecked()
    assert second.camera_actions["fake1"].isChecked()
    assert second.choice().camera == "fake1" and second.choice().output == "off"
    running(second)
    assert second.service.filter is not None and "fake camera fake1" in second.status_lines()[1]


def test_corrupt_or_invalid_settings_fall_back_to_defaults(tmp_path):
    store = SettingsStore(tmp_path / "settings.json")
    store.path.write_text("{not json")
    assert store.load() == TraySettings()
    store.path.write_text(json.dumps({"strength": 7, "mode": "sepia", "enabled": False, "camera": "1"}))
    loaded = store.load()
    assert (loaded.strength, loaded.mode) == (1.0, "auto")  # bad values: defaults
    assert (loaded.enabled, loaded.camera) == (False, "1")  # good ones kept


def test_command_line_camera_is_not_saved(make_app, tmp_path):
    app = make_app(providers(InvertEngine()), tray_available=True, camera="fake1")
    running(app)
    assert app.choice().camera == "fake1"
    app.shutdown()
    assert SettingsStore(tmp_path / "config" / "settings.json").load().camera == "auto"


# -- preview, fallback window, failures -----------------------------------------------------------


def test_preview_shows_camera_frames(make_app):
    app = make_app(providers(InvertEngine()), tray_available=True)
    app.preview_action.setChecked(True)
    assert app.preview.isVisible()
    wait_until(lambda: app.preview.frames_shown >= 1, "a first preview frame")
    first = app.preview.image.pixmap().toImage()
    assert not first.isNull() and first.width() > first.height()  # before | after, side by side
    wait_until(lambda: app.preview.image.pixmap().toImage() != first, "the preview to change")
    app.preview.close()
    assert not app.preview_action.isChecked()


def test_fallback_window_when_there_is_no_tray(make_app, caplog):
    app = make_app(providers(InvertEngine()))  # offscreen: Qt reports no system tray
    assert app.tray is None and app.window is not None
    assert app.window.isVisible()
    assert "No system tray" in app.window.reason.text()
    logged = [r.getMessage() for r in caplog.records]
    assert any("no system tray" in m.lower() and "control window" in m for m in logged)
    running(app)
    wait_until(lambda: app.window.status.text().startswith("On:"), "the window to show the on state")
    app.window.enable.click()  # the window's controls are the tray's controls
    assert app.controls.enabled is False and not app.enable_action.isChecked()
    app.window.strength.slider.setValue(60)
    assert app.controls.strength == pytest.approx(0.6)
    assert app.strength_slider.slider.value() == 60  # the menu's slider follows


def test_engine_unavailable_is_an_error_state_and_frames_pass_through(make_app):
    app = make_app(providers(engine=None), tray_available=True)
    running(app)
    wait_until(lambda: app.state == "error", "the error state")
    assert app.status_lines()[0].startswith("Engine unavailable")
    assert "no weights shipped" in app.status_lines()[-1]
    assert "Engine unavailable" in app.last_message
    wait_until(lambda: latest_pair_identical(app), "passthrough frames")
    app.enable_action.trigger()  # the switches still work and are remembered
    assert app.controls.enabled is False and app.state == "error"


def test_camera_that_does_not_open_is_reported_and_another_can_be_chosen(make_app):
    app = make_app(providers(InvertEngine()), tray_available=True, camera="broken")
    wait_until(lambda: app.state == "error", "the error state")
    assert app.status_lines()[0] == "Camera did not open" and "broken" in app.last_message
    app.camera_actions["fake0"].trigger()
    wait_until(lambda: app.state == "on", "the filter to run on another camera")


# -- reference photos (privacy) -------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_forget_my_face_deletes_the_files(make_app, tmp_path):
    store = ReferenceStore(tmp_path / "config" / "identity")
    store.save(np.zeros((3, S, S, 3), np.uint8), np.ones((128, 8, 8), np.float32))
    assert all((store.folder / name).is_file() for name in REFERENCE_FILES)
    app = make_app(providers(InvertEngine()), tray_available=True)
    assert app.controls.identity is not None and app.forget_action.isEnabled()
    app.forget_action.trigger()
    assert not store.folder.exists()
    assert app.controls.identity is None and not app.forget_action.isEnabled()
    assert "forgotten" in app.last_message


@pytest.fixture(scope="module")
def sample_frames() -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(SAMPLE_CLIP))
    frames = [cap.read()[1] for _ in range(12)]
    cap.release()
    return frames


@pytest.fixture(scope="module")
def sample_faces(sample_frames):
    with MediaPipeDetector() as detector:
        return [detector.detect(f, i * 33) for i, f in enumerate(sample_frames)]


def test_enrolment_checks_take_clean_frames_only(sample_frames, sample_faces):
    frame, faces = sample_frames[0], sample_faces[0]
    assert len(faces) == 1
    verdict, crop = assess(frame, faces)
    assert verdict.ok and crop.shape == (S, S, 3) and crop.dtype == np.uint8
    for kinds, reason in (("l", "Too dark"), ("b", "blurred"), ("n", "grainy")):
        verdict, crop = assess(FrameDegrader(kinds=kinds, seed=0)(frame), faces)
        assert not verdict.ok and reason in verdict.reason and crop is None
    assert "No face" in assess(frame, [])[0].reason
    assert "More than one" in assess(frame, [faces[0], faces[0]])[0].reason

    collector = EnrolmentCollector(target=2, min_interval_s=0.5)
    assert collector.offer(frame, faces, 0.0).ok and len(collector.crops) == 1
    collector.offer(frame, faces, 0.2)  # good, but too soon after the last photo
    assert len(collector.crops) == 1
    collector.offer(frame, faces, 0.7)
    assert collector.done and collector.stacked().shape == (2, S, S, 3)


def test_enrolment_saves_private_files_and_sets_the_identity(make_app, tmp_path, sample_frames, sample_faces):
    """Remember my face, end to end: clean camera frames -> crops -> engine.identity prior -> 0600 files."""
    import torch

    from engine.identity import ID_CHANNELS, ID_SIZE, enroll

    torch.set_num_threads(1)
    good = [(f, faces) for f, faces in zip(sample_frames, sample_faces) if len(faces) == 1]

    class ReplayCamera(FakeCamera):  # clean frames with one face, looped
        def read(self):
            time.sleep(1 / 60)
            self.index += 1
            return True, good[self.index % len(good)][0]

    class ReplayDetector(FixedFaceDetector):  # the faces MediaPipe found in those frames
        def detect(self, frame_bgr, timestamp_ms):
            return next(faces for f, faces in good if f is frame_bgr or np.array_equal(f, frame_bgr))

    def capture(spec, stats):
        return Capture(0, opener=lambda _: ReplayCamera(), realtime=True, stats=stats), "replay"

    engine = InvertEngine()
    app = make_app(providers(engine, open_capture=capture, open_detector=ReplayDetector, enroll=enroll),
                   tray_available=True)
    running(app)
    app.enrol_action.trigger()
    dialog = app.enrol_dialog
    dialog.collector.min_interval_s = 0.05
    wait_until(lambda: app.controls.identity is not None, "enrolment to finish", timeout_s=60)

    folder = tmp_path / "config" / "identity"
    assert _mode(folder) == 0o700
    for name in REFERENCE_FILES:
        assert _mode(folder / name) == 0o600, name
    assert np.load(folder / "references.npy").shape == (5, S, S, 3)
    assert app.controls.identity.shape == (ID_CHANNELS, ID_SIZE, ID_SIZE)
    assert app.forget_action.isEnabled() and "remembered" in app.last_message
    wait_until(lambda: engine.calls[-1][1] is not None, "the engine to get the identity prior")
    assert dialog.progress.value() == 5


# -- command line -------------------------------------------------------------------------------


def test_tray_is_the_default_command(monkeypatch):
    import facecam.commands.tray as tray_command
    from facecam.cli import main

    seen = []
    monkeypatch.setattr(tray_command, "run", lambda args: seen.append(args) or 0)
    assert main([]) == 0
    assert seen and seen[0].command == "tray" and seen[0].camera is None


def test_tray_command_rejects_a_missing_camera_file(capsys, tmp_path):
    from facecam.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["tray", "--camera", str(tmp_path / "nope.mp4")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.mp4" in err


# -- devices ------------------------------------------------------------------------------------


def test_camera_listing_skips_metadata_nodes_and_virtual_cameras(tmp_path):
    sysfs = tmp_path / "class"
    sysfs.mkdir()

    def node(name: str, index: int, card: str, virtual: bool) -> None:
        real = tmp_path / "devices" / ("virtual" if virtual else "pci0000:00/usb1") / "video4linux" / name
        real.mkdir(parents=True)
        (real / "index").write_text(f"{index}\n")
        (real / "name").write_text(f"{card}\n")
        (sysfs / name).symlink_to(real)

    node("video0", 0, "Integrated Camera", False)
    node("video1", 1, "Integrated Camera", False)  # metadata node of the same webcam
    node("video10", 0, "NASFE Cam", True)
    assert list_cameras(sysfs) == [CameraOption("/dev/video0", "Integrated Camera (/dev/video0)")]
    assert [n.path for n in list_virtual_cameras(sysfs)] == ["/dev/video10"]
