"""``nasfe-cam run / enhance / doctor`` from the command line, with a fake virtual camera."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pyvirtualcam
import pytest

import facecam.capture
import facecam.commands.enhance
import facecam.commands.run
from facecam.cli import main
from facecam.simulate import linear_to_srgb, srgb_to_linear

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "sample" / "webcam_sample.mkv"
SHARED = ROOT.parent / "shared"


class Brighten:
    """Test-double engine: doubles the light on each crop (linear light)."""

    crop_size = 128
    name = "test-brighten"

    def enhance(self, crops, prior=None, identity=None):
        return np.round(linear_to_srgb(srgb_to_linear(crops / 255.0) * 2.0) * 255.0).astype(np.uint8)


class RecordingBackend:
    """A pyvirtualcam backend that keeps what it is sent (the interface of ``pyvirtualcam.Backend``)."""

    instances: list[RecordingBackend] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self._device = device or "/dev/video-fake"
        self.frames: list[np.ndarray] = []
        self.closed = False
        RecordingBackend.instances.append(self)

    def send(self, frame):
        self.frames.append(frame.copy())

    def close(self):
        self.closed = True

    def device(self):
        return self._device

    def native_fourcc(self):
        return None


class ClosedCamera:
    def isOpened(self):  # noqa: N802
        return False

    def release(self):
        pass


@pytest.fixture(autouse=True)
def engine_and_devices(monkeypatch, tmp_path):
    """A test engine, no webcam, no real virtual camera; runs in a temporary folder."""
    for module in (facecam.commands.run, facecam.commands.enhance):
        monkeypatch.setattr(module, "load_engine", lambda backend, weights: Brighten())
    real_open = facecam.capture.open_video
    monkeypatch.setattr(facecam.capture, "open_video", lambda s: ClosedCamera() if facecam.capture.is_live(s) else real_open(s))
    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {})
    monkeypatch.chdir(tmp_path)
    RecordingBackend.instances.clear()


@pytest.fixture
def fake_vcam():
    pyvirtualcam.register_backend("recording", RecordingBackend)  # into the emptied registry
    return RecordingBackend.instances


def call(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors
        return int(exc.code)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


# -- run ----------------------------------------------------------------------------------------


def test_run_streams_to_the_virtual_camera(fake_vcam):
    argv = ["run", "--input", str(SAMPLE), "--output", "vcam", "--frames", "12", "--simulate", "bnl"]
    assert call([*argv, "--stats-json", "stats.json"]) == 0
    (cam,) = fake_vcam
    assert cam.closed and (cam.width, cam.height) == (640, 480)
    assert cam.fourcc == pyvirtualcam.util.encode_fourcc(pyvirtualcam.PixelFormat.BGR.value)
    assert all(f.size == 640 * 480 * 3 for f in cam.frames)
    # Paced like a camera: the clip's clock and the sender's beat drift, so a frame may be superseded
    # before its tick (dropped) or repeated; every tick reaches the camera and no frame goes missing.
    stats = json.loads(Path("stats.json").read_text())
    assert stats["frames_processed"] == 12
    assert len(cam.frames) == stats["frames_sent"] + stats["frames_repeated"]
    assert stats["frames_sent"] + stats["dropped_frames"] >= 12


def test_embedded_default_without_webcam_or_virtual_camera(tmp_path, capsys):
    assert call(["run", "--frames", "8", "--stats-json", "stats.json"]) == 0
    out = capsys.readouterr().out
    assert "no webcam opened: using the sample clip webcam_sample.mkv with --simulate bnl" in out
    assert 'sudo modprobe v4l2loopback devices=1 card_label="NASFE Cam" exclusive_caps=1' in out
    assert count_frames(tmp_path / "out" / "nasfe_cam.mp4") == 8
    preview = cv2.imread(str(tmp_path / "out" / "nasfe_cam_preview.png"))
    assert preview.shape == (480, 640 * 2 + 2, 3)
    assert np.abs(preview[:, :640].astype(int) - preview[:, 642:]).mean() > 5  # before != after
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames_processed"] == 8 and stats["frames_enhanced"] >= 6
    assert not list((tmp_path / "out").glob(".*partial*"))  # nothing half-written left behind


def test_embedded_default_prefers_the_virtual_camera(fake_vcam, tmp_path):
    assert call(["run", "--frames", "5", "--stats-json", "stats.json"]) == 0
    (cam,) = fake_vcam
    # Paced to the camera's clock, a frame may be dropped or repeated (see the test above), so the
    # camera's count follows the stats rather than equalling --frames.
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames_processed"] == 5
    assert len(cam.frames) == stats["frames_sent"] + stats["frames_repeated"] >= 1
    assert not (tmp_path / "out").exists()


def test_run_to_a_video_file_keeps_every_frame(tmp_path):
    out = tmp_path / "clip.avi"
    assert call(["run", "--input", str(SAMPLE), "--output", str(out), "--frames", "20", "--strength", "0.5"]) == 0
    assert count_frames(out) == 20


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--input", "missing.mp4"], "input not found: missing.mp4"),
        (["run", "--output", "clip.xyz", "--frames", "1"], "unknown output 'clip.xyz'"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
        (["run", "--strength", "1.5"], "expected a number in [0, 1], got 1.5"),
        (["run", "--mode", "sharpen"], "invalid choice: 'sharpen'"),
        (["run", "--frames", "0"], "expected a positive whole number of frames"),
        (["run", "--output", "vcam", "--frames", "1"], "sudo modprobe v4l2loopback"),
        (["run", "--input", "7"], "cannot read from camera 7"),
        (["run", "--identity", "nobody.npy"], "cannot read identity prior nobody.npy"),
    ],
)
def test_run_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert call(argv) == 2
    assert message in one_line_error(capsys)


def test_run_without_the_engine_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(facecam.commands.run, "load_engine", facecam.commands.common.load_engine)
    monkeypatch.setitem(sys.modules, "engine.runtime", None)  # as if engine/runtime.py did not exist
    assert call(["run", "--frames", "1"]) == 2
    assert "engine.runtime.load_enhancer" in one_line_error(capsys)


# -- enhance ------------------------------------------------------------------------------------


@pytest.fixture
def face_png(tmp_path) -> Path:
    with open(SHARED / "faces" / "index.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["source"] == "lfw" and r["split"] == "test")
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[60:360, 170:470] = cv2.resize(cv2.imread(str(SHARED / "faces" / row["path"])), (300, 300))
    path = tmp_path / "me.png"
    cv2.imwrite(str(path), canvas)
    return path


needs_shared = pytest.mark.skipif(not (SHARED / "faces" / "index.csv").is_file(), reason="../shared/faces missing")


@needs_shared
def test_enhance_an_image_and_refuse_to_overwrite_without_force(face_png, capsys):
    original = face_png.read_bytes()
    out = face_png.with_name("me_nasfe.png")
    assert call(["enhance", str(face_png)]) == 0
    first = cv2.imread(str(out))
    assert np.abs(first.astype(int) - cv2.imread(str(face_png))).mean() > 1  # the face was brightened
    out.write_bytes(b"keep me")
    capsys.readouterr()
    assert call(["enhance", str(face_png)]) == 2
    assert "me_nasfe.png already exists; add --force to overwrite" in one_line_error(capsys)
    assert out.read_bytes() == b"keep me"
    assert call(["enhance", str(face_png), "--force"]) == 0
    assert np.array_equal(cv2.imread(str(out)), first)
    assert call(["enhance", str(face_png), str(face_png), "--force"]) == 2  # never over the input
    assert "is the input itself" in one_line_error(capsys)
    assert face_png.read_bytes() == original
    assert sorted(p.name for p in face_png.parent.iterdir()) == ["me.png", "me_nasfe.png"]  # no temp files


@needs_shared
def test_enhance_a_folder(face_png, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    face_png.rename(folder / "a.png")
    cv2.imwrite(str(folder / "b.jpg"), cv2.imread(str(folder / "a.png"))[:, ::-1])
    (folder / "notes.txt").write_text("not an image")
    assert call(["enhance", str(folder)]) == 0
    assert sorted(p.name for p in (tmp_path / "photos_nasfe").iterdir()) == ["a.png", "b.jpg"]
    assert call(["enhance", str(folder)]) == 2  # outputs exist now


def test_enhance_a_video(tmp_path):
    src = tmp_path / "clip.avi"
    cap = cv2.VideoCapture(str(SAMPLE))
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for _ in range(10):
        writer.write(cap.read()[1])
    writer.release(), cap.release()
    assert call(["enhance", str(src)]) == 0
    assert count_frames(tmp_path / "clip_nasfe.avi") == 10


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["enhance", "nothing.png"], "input not found: nothing.png"),
        (["enhance", "README"], "unsupported file type"),
    ],
)
def test_enhance_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    (tmp_path / "README").write_text("x")
    assert call(argv) == 2
    assert message in one_line_error(capsys)


# -- doctor and help ----------------------------------------------------------------------------


def test_doctor_reports_one_line_per_check_and_exits_0(capsys):
    assert call(["doctor"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = ["camera", "face detector", "engine", "GPU / TensorRT", "virtual camera", "Qt / tray"]
    assert len(lines) == len(names)
    for line, name in zip(lines, names):
        assert line.startswith(("[ok  ] ", "[warn] ")) and f"] {name}: " in line
        assert line.startswith("[ok  ]") or " -> " in line  # every warning says what to do
    assert lines[0].startswith("[warn] camera")  # no webcam in these tests


@pytest.mark.parametrize("command", ["run", "enhance", "doctor"])
def test_help(command, capsys):
    assert call([command, "--help"]) == 0
    assert "usage: nasfe-cam " + command in capsys.readouterr().out
