"""Closed-set identification: the protocol on known embeddings, then MobileFaceNet on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.eval.recognition_eval import Gallery, identify, mobilefacenet_embedder
from training.faces import by_identity, crops_to_tensor, load_aligned, read_index, select, tensor_to_crops
from training.testsets import Condition, degrade_conditions, table4_kernels

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "faces"


def _unit(*rows: list[float]) -> np.ndarray:
    return np.array(rows, np.float64)


def test_probe_own_photo_is_left_out_of_its_gallery():
    # Probe "a1" is identical to its own gallery photo, which would win if it were not excluded;
    # among the others, identity b is closer than a's second photo.
    gallery = Gallery.build(_unit([1, 0, 0], [0.6, 0.8, 0], [0.8, 0.6, 0]), ["a", "a", "b"],
                            ["a1", "a2", "b1"])
    res = identify(gallery, _unit([1, 0, 0]), ["a"], ["a1"], ks=(1, 2))
    assert res.top == {1: 0.0, 2: 100.0}
    assert (res.probes, res.skipped) == (1, 0)


def test_single_photo_identities_are_distractors_not_probes():
    gallery = Gallery.build(_unit([1, 0], [0.9, 0.1], [0, 1]), ["a", "a", "solo"], ["a1", "a2", "s1"])
    res = identify(gallery, _unit([0, 1], [1, 0]), ["solo", "a"], ["s1", "a1"])
    assert (res.probes, res.skipped) == (1, 1)
    assert res.top[1] == 100.0
    # The solo identity still competes: a probe of "a" that looks like "solo" is ranked second.
    res = identify(gallery, _unit([0.1, 1]), ["a"], ["a1"], ks=(1, 2))
    assert res.top == {1: 0.0, 2: 100.0}


def test_identities_rank_by_their_best_photo():
    # b has three mediocre photos, a one good one: a must rank first (max, not sum or mean).
    gallery = Gallery.build(_unit([1, 0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]), ["a", "b", "b", "b"],
                            ["a1", "b1", "b2", "b3"])
    res = identify(gallery, _unit([1, 0.05]), ["a"], ["a0"])
    assert res.top[1] == 100.0


def test_gallery_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 embeddings, 1 identities"):
        Gallery.build(np.eye(2), ["a"], ["a1", "a2"])


@pytest.fixture(scope="module")
def people() -> tuple[np.ndarray, list[str], list[str]]:
    """Three aligned crops each of the first eight CelebA test identities with at least three."""
    torch.set_num_threads(1)
    groups = by_identity(select(read_index(FACES), split="test", sources="celeba"))
    names = sorted(n for n, recs in groups.items() if len(recs) >= 3)[:8]
    recs = [r for n in names for r in groups[n][:3]]
    return np.stack([load_aligned(r) for r in recs]), [r.identity for r in recs], [r.name for r in recs]


@pytest.fixture(scope="module")
def embed():
    torch.set_num_threads(1)
    return mobilefacenet_embedder()


def test_clean_probes_are_all_identified(people, embed):
    crops, ids, keys = people
    emb = embed(crops)
    res = identify(Gallery.build(emb, ids, keys), emb, ids, keys)
    assert res.probes == len(ids)
    assert res.top[1] == 100.0


def test_heavy_degradation_hurts_identification(people, embed):
    crops, ids, keys = people
    gallery = Gallery.build(embed(crops), ids, keys)
    # Test-BNL's darker setting with the bank's largest motion kernel, and stronger noise.
    bank, g = table4_kernels(), torch.Generator().manual_seed(0)
    worst = Condition(kernel=int(np.argmax(bank.sizes)), r=0.15, sigma_s=0.16, sigma_c=0.1)
    degraded = np.stack([tensor_to_crops(degrade_conditions(crops_to_tensor(c[None]), [worst], bank, g))[0]
                         for c in crops])
    res = identify(gallery, embed(degraded), ids, keys)
    assert res.top[1] < 60.0
    assert res.top[5] >= res.top[1]
