"""Training data: cache alignment, references, identity-free share, augmentation, batch streams."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import (
    BatchStream,
    ReferencePicker,
    augment_crops,
    centre_crops,
    load_face_set,
    split_validation,
)
from training.faces import crops_to_tensor, load_aligned, read_index
from training.run_config import AugmentConfig, DataConfig
from training.seeding import make_generator

FACES = Path(__file__).resolve().parents[2] / "shared" / "faces"
NO_AUG = AugmentConfig(flip=0.0, scale=0.0, rotate_deg=0.0, shift=0.0, temperature=0.0, tint=0.0, exposure=0.0)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _identities() -> np.ndarray:
    # 6 identities with 1, 2, 3, 4, 5, 6 photos, interleaved
    ids = np.concatenate([np.full(k, k - 1) for k in range(1, 7)])
    return np.random.default_rng(0).permutation(ids)


def test_references_same_identity_never_target() -> None:
    ident = _identities()
    picker = ReferencePicker(ident, np.arange(len(ident)))
    targets = np.arange(len(ident))
    for step in range(20):
        refs = picker.pick(targets, n_max=3, p_none=0.0, generator=make_generator(1, step))
        for t, row in zip(targets, refs):
            chosen = row[row >= 0]
            assert t not in chosen
            assert len(set(chosen.tolist())) == len(chosen)
            assert np.all(ident[chosen] == ident[t])
            others = int((ident == ident[t]).sum()) - 1
            assert (len(chosen) == 0) == (others == 0)  # only single-photo identities go without
            assert len(chosen) <= min(3, others)


def test_references_respect_pool() -> None:
    ident = _identities()
    pool = np.arange(0, len(ident), 2)
    refs = ReferencePicker(ident, pool).pick(np.arange(len(ident)), 4, 0.0, make_generator(0))
    assert set(refs[refs >= 0].tolist()) <= set(pool.tolist())


@pytest.mark.parametrize("p_none", [0.0, 0.3, 1.0])
def test_identity_free_probability(p_none: float) -> None:
    ident = np.repeat(np.arange(50), 4)  # everyone has references available
    picker = ReferencePicker(ident, np.arange(len(ident)))
    free = 0
    n = 0
    for step in range(25):
        refs = picker.pick(np.arange(len(ident)), 2, p_none, make_generator(7, step))
        free += int((refs[:, 0] < 0).sum())
        n += len(refs)
    share = free / n
    assert abs(share - p_none) < 0.03  # 5000 draws: 3 sigma of a Bernoulli(0.3) share is 0.02


def test_split_validation_disjoint_and_seeded() -> None:
    ident = _identities()
    tr, va = split_validation(ident, 2, seed=5)
    assert not set(ident[tr]) & set(ident[va])
    assert len(set(ident[va])) == 2 and all((ident == i).sum() >= 2 for i in set(ident[va]))
    assert np.array_equal(va, split_validation(ident, 2, seed=5)[1])
    with pytest.raises(Exception, match="validation identities"):
        split_validation(ident, 6, seed=0)


def test_batch_stream_shards_cover_epoch_and_repeat() -> None:
    pool = np.arange(100, 124)
    ranks = [BatchStream(pool, 4, seed=3, stream="train", rank=r, world=2) for r in range(2)]
    epoch = np.concatenate([s.indices(k) for k in range(3) for s in ranks])
    assert sorted(epoch.tolist()) == pool.tolist()  # 3 steps x 2 ranks x 4 = one epoch, no repeats
    fresh = BatchStream(pool, 4, seed=3, stream="train", rank=1, world=2)
    assert np.array_equal(fresh.indices(5), ranks[1].indices(5))  # no hidden state
    other = BatchStream(pool, 4, seed=3, stream="arch", rank=1, world=2)
    assert not np.array_equal(other.indices(0), ranks[1].indices(0))


def test_augment_identity_is_exact_centre_crop() -> None:
    ctx = torch.rand(3, 3, 40, 40, generator=make_generator(0))
    out = augment_crops(ctx, 32, NO_AUG, make_generator(1))
    assert torch.allclose(out, ctx[:, :, 4:36, 4:36], atol=1e-5)
    flipped = augment_crops(ctx, 32, dataclasses.replace(NO_AUG, flip=1.0), make_generator(1))
    assert torch.allclose(flipped, ctx[:, :, 4:36, 4:36].flip(-1), atol=1e-5)


def test_augment_seeded_and_varied() -> None:
    ctx = torch.rand(4, 3, 40, 40, generator=make_generator(0))
    a = augment_crops(ctx, 32, AugmentConfig(), make_generator(2))
    b = augment_crops(ctx, 32, AugmentConfig(), make_generator(2))
    c = augment_crops(ctx, 32, AugmentConfig(), make_generator(3))
    assert a.shape == (4, 3, 32, 32) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match=r"expected \(B, 3, C, C\)"):
        augment_crops(ctx[:, :2], 32, AugmentConfig(), make_generator(0))


@pytest.mark.skipif(not (FACES / "index.csv").is_file(), reason="shared faces not present")
def test_cache_holds_the_camera_alignment(tmp_path: Path) -> None:
    cfg = DataConfig(faces_dir=str(FACES), max_images=6, cache_dir=str(tmp_path))
    fs = load_face_set(cfg, crop_size=64)
    assert fs.crops.shape == (6, 80, 80, 3) and fs.crops.dtype == np.uint8
    again = load_face_set(cfg, crop_size=64)  # second call reads the cache
    assert np.array_equal(np.asarray(again.crops), np.asarray(fs.crops))
    by_path = {str(r.path.relative_to(FACES)): r for r in read_index(FACES)}
    first = by_path[fs.paths[0]]
    assert np.array_equal(centre_crops(np.asarray(fs.crops[:1]), 64)[0], load_aligned(first, 64))
    assert len(set(fs.identity.tolist())) < len(fs)  # biggest identities first: references exist


def test_augmentation_runs_on_the_crops_device() -> None:
    # The meta device has no data and refuses tensors from another device: a CPU-built sampling grid
    # or colour gain (which would leave a GPU run resampling on its CPU) fails here.
    crops = np.zeros((2, 160, 160, 3), np.uint8)
    context = crops_to_tensor(crops, "meta")
    assert context.device.type == "meta" and context.dtype == torch.float32
    out = augment_crops(context, 128, AugmentConfig(), make_generator(0))
    assert out.device.type == "meta" and tuple(out.shape) == (2, 3, 128, 128)
