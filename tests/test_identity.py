"""Identity prior (engine.identity): normalisation, masking, batching, the reference table, enrolment."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.align import CROP_SIZE, TEMPLATE4
from engine.identity import (
    ID_CHANNELS,
    ID_SIZE,
    IdentityEncoder,
    ReferenceTable,
    default_encoder,
    enroll,
    instance_norm,
    masked_mean,
    reference_prior,
    reference_prior_batched,
)
from training.verify import aligned_chip, load_landmarks

torch.set_num_threads(1)

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "faces"
PEOPLE = ("Abdullah_Gul", "Adam_Sandler", "Adrien_Brody", "Ai_Sugiyama")


@pytest.fixture(scope="module")
def crops_u8() -> dict[str, np.ndarray]:
    """Four model crops (uint8 RGB, 128x128) of each of four LFW people."""
    marks = load_landmarks(FACES)
    out = {}
    for person in PEOPLE:
        paths = sorted(p for p in marks if p.startswith(f"lfw/{person}_"))[:4]
        out[person] = np.stack([
            aligned_chip(cv2.imread(str(FACES / p))[:, :, ::-1].copy(), marks[p], CROP_SIZE, TEMPLATE4) for p in paths
        ])
    return out


@pytest.fixture(scope="module")
def encoder() -> IdentityEncoder:
    return default_encoder("cpu")


def _t(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255.0


def test_instance_norm_standardises_each_map():
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 4 + 7
    y = instance_norm(x)
    assert torch.allclose(y.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(y.std(dim=(2, 3), unbiased=False), torch.ones(2, 3), atol=1e-3)
    assert torch.equal(instance_norm(torch.full((1, 1, 3, 3), 2.0)), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"got shape \(3, 5, 5\)"):
        instance_norm(x[0])


def test_instance_norm_gradcheck():
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradcheck(instance_norm, (x,))


def test_masked_mean_ignores_missing_and_zeros_empty_rows():
    v = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [7.0], [9.0]], [[4.0], [4.0], [4.0]]])
    m = torch.tensor([[True, True, False], [False, True, False], [False, False, False]])
    assert torch.equal(masked_mean(v, m), torch.tensor([[2.0], [7.0], [0.0]]))
    with pytest.raises(ValueError, match="mask shape"):
        masked_mean(v, m[:, :2])


def test_reference_prior_is_mean_of_normalised_level2_maps(crops_u8, encoder):
    x = _t(crops_u8[PEOPLE[0]][:3])
    with torch.no_grad():
        prior = reference_prior(x)
        per_photo = instance_norm(encoder.features(x).level2)
    assert prior.shape == (ID_CHANNELS, ID_SIZE, ID_SIZE)
    assert torch.allclose(prior, per_photo.mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="n >= 1"):
        reference_prior(x[:0])


def test_priors_of_disjoint_photos_match_the_same_person(crops_u8):
    with torch.no_grad():
        a = torch.stack([reference_prior(_t(crops_u8[p][:2])).flatten() for p in PEOPLE])
        b = torch.stack([reference_prior(_t(crops_u8[p][2:])).flatten() for p in PEOPLE])
    sim = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    assert torch.equal(sim.argmax(dim=1), torch.arange(len(PEOPLE)))


def test_batched_prior_respects_mask(crops_u8):
    a, b = _t(crops_u8[PEOPLE[0]][:3]), _t(crops_u8[PEOPLE[1]][:3])
    crops = torch.stack([a, b, torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(2))])
    mask = torch.tensor([[True, True, True], [True, False, True], [False, False, False]])
    with torch.no_grad():
        out = reference_prior_batched(crops, mask)
        garbage = crops.clone()
        garbage[1, 1] = 1.0  # content of an empty slot must not matter
        out2 = reference_prior_batched(garbage, mask)
        assert out.shape == (3, ID_CHANNELS, ID_SIZE, ID_SIZE)
        assert torch.allclose(out[0], reference_prior(a), atol=1e-5)
        assert torch.allclose(out[1], reference_prior(b[[0, 2]]), atol=1e-5)
        assert torch.equal(out[2], torch.zeros_like(out[2]))
        assert torch.equal(out, out2)
        assert torch.equal(reference_prior_batched(crops, torch.zeros(3, 3, dtype=torch.bool)), torch.zeros_like(out))
    with pytest.raises(ValueError, match="mask shape"):
        reference_prior_batched(crops, mask[:, :2])


def test_enroll_gives_numpy_prior_for_the_enhancer(crops_u8):
    prior = enroll(crops_u8[PEOPLE[0]][:2])
    assert prior.dtype == np.float32 and prior.shape == (ID_CHANNELS, ID_SIZE, ID_SIZE)
    with torch.no_grad():
        assert np.allclose(prior, reference_prior(_t(crops_u8[PEOPLE[0]][:2])).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="uint8 RGB"):
        enroll(crops_u8[PEOPLE[0]][:2].astype(np.float32))


def test_reference_table_matches_direct_priors_and_embeddings(crops_u8, encoder):
    photos = np.concatenate([crops_u8[p][:2] for p in PEOPLE[:2]])  # photos 0,1: person 0; 2,3: person 1
    table = ReferenceTable.build(photos, batch_size=3)
    assert len(table) == 4 and table.maps.dtype == torch.float16
    refs = np.array([[0, 1, -1], [-1, -1, -1], [3, -1, -1]])
    prior = table.prior(refs, torch.device("cpu"))
    with torch.no_grad():
        assert torch.allclose(prior[0], reference_prior(_t(photos[:2])), atol=2e-2)
        assert torch.equal(prior[1], torch.zeros_like(prior[1]))
        emb, mask = table.embeddings(refs, torch.device("cpu"))
        direct = encoder.features(_t(photos[[3]])).embedding[0]
    assert emb.shape == (3, 3, 128) and torch.equal(mask, torch.from_numpy(refs >= 0))
    assert torch.allclose(emb[2, 0], direct, atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        table.prior(np.array([[4]]), torch.device("cpu"))
