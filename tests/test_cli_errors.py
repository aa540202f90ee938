"""Bad command-line input to the real console entry points (issue 11).

``nasfe-cam`` (``facecam.cli.main``), ``nasfe-train`` (``training.cli.main``) and ``nasfe-eval``
(``training.eval_cli.main``) given wrong paths, unreadable or damaged files and unknown options
must answer with exactly one line on stderr (file descriptor 2, so native libraries' chatter
counts too), exit code 2, no traceback, and leave every file in the working folder as it was:
nothing overwritten, nothing deleted, nothing half-written added.

Then ``enhance``'s promise in the cases that fail half-way: outputs are written atomically and an
interrupted or failing run leaves existing outputs and inputs byte-identical.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import facecam.commands.enhance
import facecam.commands.run
import facecam.files
from facecam.cli import main as cam_main
from facecam.commands.common import load_engine
from facecam.pipeline import FramePipeline
from training.cli import main as train_main
from training.eval_cli import main as eval_main

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "sample" / "webcam_sample.mkv"


class Mirror:
    """Test-double engine (mirrors each crop); the real loader is used whenever --weights is given."""

    crop_size = 64
    name = "test-mirror"

    def enhance(self, crops, prior=None, identity=None):
        return np.ascontiguousarray(crops[:, :, ::-1])


def _engine(backend: str, weights: Path | None):
    return load_engine(backend, weights) if weights is not None else Mirror()


@pytest.fixture
def workdir(tmp_path, monkeypatch, smoke_engine) -> Path:
    """The working folder every case runs in, with good, bad and existing files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NASFE_CAM_CACHE", str(tmp_path / ".cache"))
    for module in (facecam.commands.run, facecam.commands.enhance):
        monkeypatch.setattr(module, "load_engine", _engine)
    rng = np.random.default_rng(0)
    cv2.imwrite("in.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    png = Path("in.png").read_bytes()
    Path("half.png").write_bytes(png[: len(png) // 2])  # truncated
    Path("bad.png").write_bytes(b"not a png at all, just words")
    Path("keep.png").write_bytes(b"an existing output: must survive")
    Path("keep.onnx").write_bytes(b"an existing export: must survive")
    Path("keep.json").write_text('{"existing": "report"}\n')
    Path("notes.txt").write_text("not an image or a video\n")
    Path("bad.mkv").write_bytes(b"\x1aE\xdf\xa3 not really matroska" * 10)
    Path("old.avi").write_bytes(b"an existing video output: must survive")
    writer = cv2.VideoWriter("clip.avi", cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    os.symlink("in.png", "link.png")
    Path("empty").mkdir()
    Path("photos").mkdir()
    shutil.copy("in.png", "photos/a.png")
    Path("engine").mkdir()
    for name in ("genotype.json", "weights.safetensors", "other.json"):
        shutil.copy(smoke_engine / name, Path("engine") / name)
    Path("damaged").mkdir()
    weights = (smoke_engine / "weights.safetensors").read_bytes()
    Path("damaged/weights.safetensors").write_bytes(weights[: len(weights) // 2])
    shutil.copy(smoke_engine / "genotype.json", "damaged/genotype.json")
    np.save("wrong_identity.npy", np.zeros((3, 4, 4), np.float32))
    return tmp_path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links followed) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def call(main: Callable, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors
        return int(exc.code)


CAM, TRAIN, EVAL = "nasfe-cam", "nasfe-train", "nasfe-eval"
MAINS = {CAM: cam_main, TRAIN: train_main, EVAL: eval_main}

# name: (program, its arguments, words the one error line must contain)
BAD_INPUT: dict[str, tuple[str, str, str]] = {
    "cam_unknown_command": (CAM, "explode", "invalid choice: 'explode'"),
    "cam_unknown_option": (CAM, "--explode", "unrecognized arguments: --explode"),
    # run
    "run_input_missing": (CAM, "run --input missing.mp4", "input not found: missing.mp4"),
    "run_input_unreadable_video": (CAM, "run --input bad.mkv --output o.avi", "cannot read from video file bad.mkv"),
    "run_input_not_a_video": (CAM, "run --input notes.txt --output o.avi", "cannot read from video file notes.txt"),
    "run_output_is_the_input": (CAM, "run --input clip.avi --output clip.avi", "output clip.avi is the input itself"),
    "run_output_exists": (CAM, "run --input clip.avi --output old.avi", "old.avi already exists; add --force"),
    "run_output_unknown_kind": (CAM, "run --input clip.avi --output out.xyz", "unknown output 'out.xyz'"),
    "run_stats_json_is_the_input": (
        CAM, "run --input clip.avi --output o.avi --stats-json clip.avi", "would overwrite the input"
    ),
    "run_unknown_option": (CAM, "run --explode", "unrecognized arguments: --explode"),
    "run_frames_not_a_number": (CAM, "run --frames ten", "expected a positive whole number of frames"),
    "run_strength_out_of_range": (CAM, "run --strength 2", "expected a number in [0, 1]"),
    "run_identity_missing": (CAM, "run --identity nobody.npy", "cannot read identity prior nobody.npy"),
    "run_identity_not_an_array": (CAM, "run --identity bad.png", "not a .npy array"),
    "run_identity_does_not_fit": (
        CAM, "run --weights engine/weights.safetensors --backend torch --identity wrong_identity.npy",
        "identity prior wrong_identity.npy does not fit the engine",
    ),
    "run_weights_missing": (CAM, "run --weights none.safetensors", "weights file not found: none.safetensors"),
    "run_weights_truncated": (
        CAM, "run --weights damaged/weights.safetensors --backend torch", "corrupt or unreadable weights file damaged/"
    ),
    "run_backend_unknown": (
        CAM, "run --weights engine/weights.safetensors --backend vulkan", "unknown backend 'vulkan'"
    ),
    # enhance
    "enhance_input_missing": (CAM, "enhance missing.png", "input not found: missing.png"),
    "enhance_unreadable_image": (CAM, "enhance bad.png", "bad.png: not a readable image"),
    "enhance_truncated_image": (CAM, "enhance half.png", "half.png: not a readable image"),
    "enhance_unreadable_video": (CAM, "enhance bad.mkv", "bad.mkv: not a readable video"),
    "enhance_unsupported_type": (CAM, "enhance notes.txt", "unsupported file type '.txt'"),
    "enhance_output_exists": (CAM, "enhance in.png keep.png", "keep.png already exists; add --force"),
    "enhance_output_is_the_input": (CAM, "enhance in.png in.png --force", "is the input itself"),
    "enhance_output_links_to_the_input": (CAM, "enhance in.png link.png --force", "is the input itself"),
    "enhance_folder_into_itself": (CAM, "enhance photos photos --force", "is the input itself"),
    "enhance_output_of_another_kind": (CAM, "enhance in.png out.avi", "must be an image like the input"),
    "enhance_folder_without_images": (CAM, "enhance empty", "no images"),
    "enhance_unknown_option": (CAM, "enhance in.png --explode", "unrecognized arguments: --explode"),
    "enhance_damaged_weights_keep_the_old_output": (
        CAM, "enhance in.png keep.png --force --weights damaged/weights.safetensors --backend torch",
        "corrupt or unreadable weights file",
    ),
    # bench, doctor, tray
    "bench_clip_missing": (CAM, "bench --random smoke --clip missing.mkv", "clip not found: missing.mkv"),
    "bench_clip_unreadable": (
        CAM, "bench --random smoke --backend torch --clip bad.mkv --runs 1 --frames 1 --sizes 64x48 --threads 1",
        "bad.mkv: not a readable video",
    ),
    "bench_size_too_small_keeps_the_old_report": (
        CAM, "bench --random smoke --sizes 8x8 --json keep.json", "frame size 8x8 is too small"
    ),
    "bench_soak_not_positive": (CAM, "bench --soak 0", "expected minutes > 0"),
    "bench_weights_missing": (CAM, "bench --weights none.safetensors --frames 0", "weights file not found"),
    "doctor_unknown_option": (CAM, "doctor --explode", "unrecognized arguments: --explode"),
    "tray_camera_file_missing": (CAM, "tray --camera missing.mp4", "missing.mp4"),
    "tray_unknown_option": (CAM, "tray --explode", "unrecognized arguments: --explode"),
    # nasfe-train
    "train_unknown_command": (TRAIN, "explode", "invalid choice: 'explode'"),
    "degrade_input_missing": (TRAIN, "degrade missing.png -o keep.png", "no image file at missing.png"),
    "degrade_input_unreadable": (TRAIN, "degrade bad.png -o keep.png", "cannot read bad.png as an image"),
    "degrade_input_truncated": (TRAIN, "degrade half.png -o keep.png", "cannot read half.png as an image"),
    "degrade_output_missing": (TRAIN, "degrade in.png", "-o/--output"),
    "degrade_unknown_option": (TRAIN, "degrade in.png -o x.png --explode", "unrecognized arguments: --explode"),
    "degrade_output_is_the_input": (TRAIN, "degrade in.png -o in.png", "-o in.png is the input image"),
    "export_output_is_the_weights": (
        TRAIN, "export --genotype engine/genotype.json --weights engine/weights.safetensors --format onnx "
        "-o engine/weights.safetensors", "would overwrite the network's own files",
    ),
    "export_weights_truncated": (
        TRAIN, "export --genotype engine/genotype.json --weights damaged/weights.safetensors -o keep.onnx",
        "corrupt or unreadable weights file damaged/weights.safetensors",
    ),
    "export_genotype_missing": (
        TRAIN, "export --genotype none.json --weights engine/weights.safetensors -o keep.onnx",
        "genotype file not found: none.json",
    ),
    "export_genotype_mismatch": (
        TRAIN, "export --genotype engine/other.json --weights engine/weights.safetensors -o keep.onnx",
        "saved for another genotype than engine/other.json",
    ),
    "info_genotype_unreadable": (TRAIN, "info --genotype bad.png", "genotype file bad.png"),
    "info_config_unknown": (TRAIN, "info --config huge", "unknown network config 'huge'"),
    # nasfe-eval
    "eval_unknown_command": (EVAL, "explode", "invalid choice: 'explode'"),
    "verify_faces_missing": (EVAL, "verify --faces nowhere", "no index.csv in nowhere"),
    "verify_recognizer_unknown": (EVAL, "verify --recognizer vgg", "invalid choice: 'vgg'"),
    "eval_run_testsets_missing": (EVAL, "run --testsets nowhere --out report", "test-set directory not found: nowhere"),
    "eval_run_out_missing": (EVAL, "run --testsets nowhere", "--out"),
    "eval_run_unknown_option": (EVAL, "run --testsets t --out r --explode", "unrecognized arguments: --explode"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, workdir, capfd):
    program, argv, words = BAD_INPUT[case]
    before = snapshot(workdir)
    capfd.readouterr()
    code = call(MAINS[program], argv.split())
    err = capfd.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{program}") and words in lines[0], lines[0]
    assert snapshot(workdir) == before  # nothing overwritten, deleted or added


# -- enhance when it fails half-way --------------------------------------------------------------


def test_interrupted_folder_keeps_the_old_outputs_whole(workdir, monkeypatch, capfd):
    """Ctrl-C on the second of three images: the first output is new, the others are the old files,
    and no temporary file is left behind."""
    for name in ("b.png", "c.png"):
        shutil.copy("in.png", f"photos/{name}")
    Path("photos_nasfe").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Path("photos_nasfe", name).write_bytes(f"old {name}".encode())
    calls = []
    real = FramePipeline.process

    def process(self, frame, t_s):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, frame, t_s)

    monkeypatch.setattr(FramePipeline, "process", process)
    inputs = snapshot(workdir / "photos")
    assert call(cam_main, ["enhance", "photos", "--force"]) == 130
    assert "interrupted" in capfd.readouterr().err
    assert cv2.imread("photos_nasfe/a.png").shape == (64, 64, 3)
    assert [Path("photos_nasfe", n).read_bytes() for n in ("b.png", "c.png")] == [b"old b.png", b"old c.png"]
    assert snapshot(workdir / "photos") == inputs
    assert not [p for p in workdir.rglob("*partial*")]


def test_interrupted_video_keeps_the_old_output(workdir, monkeypatch, capfd):
    Path("clip_nasfe.avi").write_bytes(b"old video")
    calls = []
    real = FramePipeline.process

    def process(self, frame, t_s):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, frame, t_s)

    monkeypatch.setattr(FramePipeline, "process", process)
    source = Path("clip.avi").read_bytes()
    assert call(cam_main, ["enhance", "clip.avi", "--force"]) == 130
    assert Path("clip_nasfe.avi").read_bytes() == b"old video" and Path("clip.avi").read_bytes() == source
    assert not [p for p in workdir.rglob("*partial*")]


def test_a_failing_write_leaves_the_old_output_and_no_partial_file(workdir, monkeypatch, capfd):
    """The disk fills up mid-write: one line naming the file, exit 2, the old output untouched."""

    def disk_full(path, image):
        Path(path).write_bytes(b"\x89PNG half")  # part of the file reached the disk
        return False

    monkeypatch.setattr(facecam.files.cv2, "imwrite", disk_full)
    assert call(cam_main, ["enhance", "in.png", "keep.png", "--force"]) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write keep.png" in err and "Traceback" not in err
    assert Path("keep.png").read_bytes() == b"an existing output: must survive"
    assert not [p for p in workdir.rglob("*partial*")]


def test_enhance_with_force_replaces_the_output_in_one_step(workdir, monkeypatch):
    """The output is written beside the target and renamed over it: the target's inode changes, the
    input's does not (a hard link to the input named as output stays the input)."""
    os.link("in.png", "hard.png")
    before = Path("in.png").read_bytes()
    assert call(cam_main, ["enhance", "in.png", "hard.png", "--force"]) == 0
    assert Path("in.png").read_bytes() == before
    assert os.stat("hard.png").st_ino != os.stat("in.png").st_ino
    assert cv2.imread("hard.png").shape == (64, 64, 3)
