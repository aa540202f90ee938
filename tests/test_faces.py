"""Face index records and aligned crops (training/faces.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.align import TEMPLATE4
from engine.errors import UserError
from training.faces import (
    AlignJitter,
    by_identity,
    crops_to_tensor,
    load_aligned,
    read_index,
    read_rgb,
    select,
    tensor_to_crops,
    write_rgb,
)

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "faces"
HEADER = "path,identity,source,split," + ",".join(f"x{i},y{i}" for i in range(5))


def yunet5_from_template(scale: float, angle: float, offset: tuple[float, float]) -> np.ndarray:
    """Five YuNet-order points whose eyes/nose/mouth centre are the template under a similarity."""
    t = TEMPLATE4 * 128
    mouth = t[3]
    pts = np.array([t[0], t[1], t[2], mouth - [12, 0], mouth + [12, 0]])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (pts @ rot.T) * scale + offset


def make_faces(root: Path, rows: list[tuple[str, str, str, str]], points: np.ndarray) -> None:
    """A tiny faces folder: each image is dark with coloured dots on its five landmarks."""
    lines = [HEADER]
    for path, identity, source, split in rows:
        img = np.full((200, 220, 3), 40, np.uint8)
        for (x, y), colour in zip(points, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 0)]):
            cv2.circle(img, (round(x), round(y)), 3, colour, -1)
        write_rgb(root / path, img)
        lines.append(f"{path},{identity},{source},{split}," + ",".join(f"{v:.3f}" for v in points.ravel()))
    (root / "index.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def faces(tmp_path: Path) -> tuple[Path, np.ndarray]:
    pts = yunet5_from_template(1.2, 0.3, (40.0, 10.0))
    make_faces(tmp_path, [
        ("a/p1.png", "a:p", "a", "train"), ("a/p2.png", "a:p", "a", "train"),
        ("a/q1.png", "a:q", "a", "test"), ("b/r1.png", "b:r", "b", "test"),
    ], pts)
    return tmp_path, pts


def test_index_records_filters_and_groups(faces: tuple[Path, np.ndarray]) -> None:
    root, pts = faces
    recs = read_index(root)
    assert len(recs) == 4 and recs[0].path == (root / "a/p1.png").resolve()
    np.testing.assert_allclose(recs[0].landmarks5, pts, atol=1e-3)
    assert [r.name for r in select(recs, split="test")] == ["q1", "r1"]
    assert [r.name for r in select(recs, split="test", sources="a")] == ["q1"]
    assert len(select(recs, sources=["a", "b"])) == 4
    assert {k: len(v) for k, v in by_identity(recs).items()} == {"a:p": 2, "a:q": 1, "b:r": 1}


def test_aligned_crop_puts_landmarks_on_the_template(faces: tuple[Path, np.ndarray]) -> None:
    root, _ = faces
    crop = load_aligned(read_index(root)[0], 128)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    for (x, y), channel in zip(TEMPLATE4[:3] * 128, (0, 1, 2)):
        patch = crop[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2, channel]
        assert patch.max() > 200, f"landmark dot not at template position ({x:.1f}, {y:.1f})"


def test_context_crop_holds_the_model_crop_at_its_centre(faces: tuple[Path, np.ndarray]) -> None:
    rec = read_index(faces[0])[0]
    wide = load_aligned(rec, 64, context=1.5)
    assert wide.shape == (96, 96, 3)
    diff = np.abs(wide[16:80, 16:80].astype(int) - load_aligned(rec, 64).astype(int))
    assert diff.max() <= 1


def test_jitter_is_seeded_and_changes_the_crop(faces: tuple[Path, np.ndarray]) -> None:
    rec = read_index(faces[0])[0]
    a = load_aligned(rec, jitter=AlignJitter(), rng=np.random.default_rng(1))
    b = load_aligned(rec, jitter=AlignJitter(), rng=np.random.default_rng(1))
    c = load_aligned(rec, jitter=AlignJitter(), rng=np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, load_aligned(rec))
    with pytest.raises(ValueError, match="rng"):
        load_aligned(rec, jitter=AlignJitter())


def test_bad_index_and_images_raise_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no face index"):
        read_index(tmp_path)
    (tmp_path / "index.csv").write_text("path,identity\nx.png,a\n")
    with pytest.raises(UserError, match="missing columns source, split, x0"):
        read_index(tmp_path)
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(UserError, match="cannot read"):
        read_rgb(tmp_path / "fake.png")
    with pytest.raises(UserError, match="no image file"):
        read_rgb(tmp_path / "missing.png")
    with pytest.raises(UserError, match="cannot write"):
        write_rgb(tmp_path / "out.notanimage", np.zeros((4, 4, 3), np.uint8))


def test_tensor_round_trip() -> None:
    crops = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = crops_to_tensor(crops)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert np.array_equal(tensor_to_crops(x), crops)
    with pytest.raises(ValueError, match=r"expected \(N, H, W, 3\) uint8"):
        crops_to_tensor(crops.astype(np.float32))


@pytest.mark.skipif(not (FACES / "index.csv").is_file(), reason="shared faces not available")
def test_shared_index_keeps_identities_on_one_side_of_the_split() -> None:
    recs = read_index(FACES)
    train = {r.identity for r in select(recs, split="train")}
    test = {r.identity for r in select(recs, split="test")}
    assert train and test and not train & test
    assert {r.source for r in recs} >= {"celeba", "lfw"}
