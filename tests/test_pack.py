"""Packed faces folder: a valid faces_dir whose crops re-align onto themselves."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from engine.errors import UserError
from training.cli import main as train_main
from training.faces import aligned_matrix, load_aligned, read_index, read_rgb
from training.pack import pack_faces

FACES = Path(__file__).resolve().parents[2] / "shared" / "faces"
pytestmark = pytest.mark.skipif(not (FACES / "index.csv").is_file(), reason="shared faces not available")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("pack") / "faces"
    return out, pack_faces(FACES, out, crop_size=128, context=1.25, max_images=40, per_identity=3, seed=1)


def test_pack_is_a_faces_folder_of_train_identities_with_references(pack) -> None:
    out, packed = pack
    records = read_index(out)
    assert [r.path for r in records] == [r.path for r in packed]
    assert 20 <= len(records) <= 40
    assert {r.split for r in records} == {"train"}
    per_person = Counter(r.identity for r in records)
    assert min(per_person.values()) >= 2 and max(per_person.values()) <= 3
    assert len({r.source for r in records}) >= 2  # every source gets its share, not one source first
    assert json.loads((out / "pack.json").read_text())["images"] == len(records)


def test_packed_crop_realigns_onto_itself_and_matches_the_original(pack) -> None:
    out, packed = pack
    originals = {(r.identity, r.name): r for r in read_index(FACES)}
    for rec in packed[:6]:
        m, side = aligned_matrix(rec.landmarks5, 128, context=1.25)
        assert side == 160
        np.testing.assert_allclose(m, np.eye(2, 3), atol=1e-3)  # the pack's landmarks sit on the template
        packed_crop = read_rgb(rec.path)
        original = load_aligned(originals[rec.identity, rec.name], 128, context=1.25)
        assert packed_crop.shape == original.shape
        assert _psnr(packed_crop, original) > 35  # WebP q95 costs little
        realigned = load_aligned(rec, 128, context=1.25).astype(np.int16)
        assert np.abs(realigned - packed_crop).max() <= 1  # re-alignment is the identity


def test_pack_refuses_bad_settings(pack, tmp_path) -> None:
    with pytest.raises(UserError, match="per-identity"):
        pack_faces(FACES, tmp_path / "a", crop_size=128, context=1.25, max_images=10, per_identity=1)
    with pytest.raises(UserError, match="max-images"):
        pack_faces(FACES, tmp_path / "b", crop_size=128, context=1.25, max_images=0)
    with pytest.raises(UserError, match="already holds a pack"):
        pack_faces(FACES, pack[0], crop_size=128, context=1.25, max_images=10)


def test_pack_command_reports_and_fails_in_one_line(tmp_path, capsys) -> None:
    assert train_main(["pack", "--faces", str(FACES), "--out", str(tmp_path / "p"), "--max-images", "8"]) == 0
    assert "packed" in capsys.readouterr().out
    assert train_main(["pack", "--faces", str(FACES), "--out", str(tmp_path / "q"), "--quality", "0"]) != 0
    err = capsys.readouterr().err.strip()
    assert "--quality" in err and len(err.splitlines()) == 1
