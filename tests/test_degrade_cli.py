"""The degradation commands: nasfe-train degrade, testsets and contact-sheet (incl. error paths)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.cli import main
from training.faces import read_rgb, write_rgb

torch.set_num_threads(1)
FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "faces"
needs_faces = pytest.mark.skipif(not (FACES / "index.csv").is_file(), reason="shared faces not available")


def one_line_error(capsys: pytest.CaptureFixture[str], match: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and match in err, err


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    img = (np.linspace(40, 220, 64)[None, :, None] + rng.integers(0, 20, (48, 64, 3))).astype(np.uint8)
    write_rgb(tmp_path / "face.png", img)
    return tmp_path / "face.png"


def test_degrade_writes_a_darker_image_for_lowlight(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "dark.png"
    assert main(["degrade", str(photo), "-o", str(out), "--lowlight", "--seed", "3"]) == 0
    assert "low light r=" in capsys.readouterr().out
    y, x = read_rgb(out), read_rgb(photo)
    assert y.shape == x.shape and y.mean() < x.mean()


def test_degrade_all_three_by_default_and_seeded(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a.png", "b.png"):
        assert main(["degrade", str(photo), "-o", str(tmp_path / name)]) == 0
    printed = capsys.readouterr().out
    assert "blur" in printed and "noise" in printed and "low light" in printed
    assert np.array_equal(read_rgb(tmp_path / "a.png"), read_rgb(tmp_path / "b.png"))


@pytest.mark.parametrize(("name", "match"), [("missing.png", "no image file"), ("text.png", "cannot read")])
def test_degrade_bad_input_exits_2_with_one_line(
    name: str, match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "text.png").write_text("not an image")
    assert main(["degrade", str(tmp_path / name), "-o", str(tmp_path / "o.png")]) == 2
    one_line_error(capsys, match)


def test_degrade_bad_output_and_tiny_image(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["degrade", str(photo), "-o", str(tmp_path / "o.txt")]) == 2
    one_line_error(capsys, "cannot write")
    write_rgb(tmp_path / "tiny.png", np.zeros((10, 10, 3), np.uint8))
    assert main(["degrade", str(tmp_path / "tiny.png"), "-o", str(tmp_path / "o.png")]) == 2
    one_line_error(capsys, "expected both sides > 27")


def test_testsets_bad_faces_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["testsets", "--faces", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t")]) == 2
    one_line_error(capsys, "no face index")
    assert main(["testsets", "--faces", str(tmp_path), "--out", str(tmp_path / "t"), "--sets", "Test-X"]) == 2
    one_line_error(capsys, "--sets: expected a comma-separated subset")


@needs_faces
def test_testsets_command_and_overwrite_guard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t"
    args = ["testsets", "--faces", str(FACES), "--out", str(out), "--limit", "1", "--per-image", "2",
            "--sets", "Test-B,Test-BNL", "--sources", "celeba"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "celeba: 1 clean faces -> Test-B 2/52, Test-BNL 2/104" in printed
    assert len((out / "manifest.csv").read_text().splitlines()) == 1 + 4
    assert main(args) == 2
    one_line_error(capsys, "pass --force")
    assert main(args + ["--force"]) == 0


@needs_faces
def test_contact_sheet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sheet.png"
    assert main(["contact-sheet", "--faces", str(FACES), "-o", str(out), "--n", "2", "--scale", "1"]) == 0
    sheet = read_rgb(out)
    assert sheet.shape == (28 + 2 * 128, 6 * 128, 3)
    clean, bnl = sheet[28:156, :128].astype(float), sheet[28:156, 5 * 128 :].astype(float)
    assert bnl.mean() < clean.mean(), "the blur+noise+low-light column should be darker"
    assert main(["contact-sheet", "--faces", str(FACES), "-o", str(out), "--n", "0"]) == 2
    one_line_error(capsys, "--n and --scale must be >= 1")
