"""Training losses: zero for a perfect restoration, growing with degradation, gradients to the image only."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.align import CROP_SIZE, TEMPLATE4
from engine.recognition import DlibCropFeatures
from training.losses import (
    LAMBDA_IDEN,
    LAMBDA_PER,
    FinalLoss,
    IdentityLoss,
    L2Loss,
    PerceptualLoss,
    identity_loss,
    l2_loss,
    perceptual_loss,
)
from training.verify import aligned_chip, load_landmarks

torch.set_num_threads(1)

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "faces"


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    """Model crops (1, 3, 128, 128) RGB [0, 1] of two LFW photos."""
    marks = load_landmarks(FACES)
    paths = sorted(p for p in marks if p.startswith("lfw/Adam_Sandler_"))[:1] + \
        sorted(p for p in marks if p.startswith("lfw/Ai_Sugiyama_"))[:1]
    u8 = np.stack([aligned_chip(cv2.imread(str(FACES / p))[:, :, ::-1].copy(), marks[p], CROP_SIZE, TEMPLATE4)
                   for p in paths])
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def features() -> DlibCropFeatures:
    return DlibCropFeatures()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * math.ceil(3 * sigma) + 1
    imgs = [cv2.GaussianBlur(c.permute(1, 2, 0).numpy(), (k, k), sigma) for c in x]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)


def _noise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)


def test_l2_loss_and_module(clean):
    assert l2_loss(clean, clean).item() == 0.0
    noisy = _noise(clean, 0.1)
    assert torch.allclose(l2_loss(noisy, clean), ((noisy - clean) ** 2).mean())
    assert torch.equal(L2Loss()(noisy, clean), l2_loss(noisy, clean))
    with pytest.raises(ValueError, match=r"restored shape \(2, 3, 64, 64\) != clean \(2, 3, 128, 128\)"):
        l2_loss(clean[..., :64, :64], clean)


@pytest.mark.parametrize("degrade,levels", [(_blur, (0.7, 1.5, 3.0)), (_noise, (0.02, 0.06, 0.15))])
def test_losses_vanish_for_identical_images_and_grow_with_degradation(clean, features, degrade, levels):
    loss = FinalLoss(features=features)
    with torch.no_grad():
        perfect = loss(clean, clean)
        parts = [loss(degrade(clean, s), clean) for s in levels]
    assert perfect.l2 == 0 and perfect.perceptual == 0 and perfect.identity < 2e-3
    for name in ("l2", "perceptual", "identity"):
        values = [getattr(perfect, name).item()] + [getattr(p, name).item() for p in parts]
        assert all(a < b for a, b in zip(values, values[1:])), (name, values)


def test_gradients_reach_the_restored_image_not_the_recognizer(clean, features):
    restored = _blur(clean, 1.5).requires_grad_(True)
    for loss in (PerceptualLoss(features), IdentityLoss(features)):
        restored.grad = None
        value = loss(restored, clean) if isinstance(loss, PerceptualLoss) else loss(restored, clean=clean)
        value.backward()
        g = restored.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert all(p.grad is None for p in features.parameters())


def test_final_loss_is_the_weighted_sum_and_keeps_recognizer_in_eval(clean, features):
    loss = FinalLoss(features=features).train()
    assert loss.training and not features.recognizer.training
    restored = _noise(clean, 0.05)
    out = loss(restored, clean)
    with torch.no_grad():
        per = PerceptualLoss(features)(restored, clean)
        iden = IdentityLoss(features)(restored, clean=clean)
    assert torch.allclose(out.perceptual, per) and torch.allclose(out.identity, iden, atol=1e-6)
    assert torch.allclose(out.total, out.l2 + LAMBDA_PER * per + LAMBDA_IDEN * iden)
    assert (loss.lambda_per, loss.lambda_iden) == (0.04, 0.003)


def test_final_loss_uses_reference_embeddings_with_mask(clean, features):
    loss = FinalLoss(features=features)
    with torch.no_grad():
        emb = features(clean).embedding
    other = emb.flip(0)  # each sample's "reference" is the other person
    refs = torch.stack([emb, other], dim=1)  # (B, 2, 128)
    with torch.no_grad():
        own = loss(clean, clean, refs, torch.tensor([[True, False], [True, False]])).identity
        wrong = loss(clean, clean, refs, torch.tensor([[False, True], [False, True]])).identity
    assert own < 2e-3 < wrong


def test_identity_loss_angles_masking_and_gradcheck():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    refs = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, -1.0], [0.6, 0.8]]])
    assert math.isclose(identity_loss(e, refs[:, :1]).item(), (math.pi / 2 + math.pi) / 2, rel_tol=1e-3)
    mask = torch.tensor([[True, False], [False, False]])
    assert math.isclose(identity_loss(e, refs, mask).item(), math.pi / 2, rel_tol=1e-6)  # row 2 has no refs
    assert identity_loss(e, refs, torch.zeros(2, 2, dtype=torch.bool)).item() == 0.0
    gen = torch.Generator().manual_seed(4)
    x = torch.nn.functional.normalize(torch.randn(2, 4, dtype=torch.float64, generator=gen), dim=1)
    r = torch.nn.functional.normalize(torch.randn(2, 3, 4, dtype=torch.float64, generator=gen), dim=2)
    assert torch.autograd.gradcheck(lambda a: identity_loss(a, r), (x.requires_grad_(True),))
    with pytest.raises(ValueError, match=r"got \(2, 2\) and \(2, 2\)"):
        identity_loss(e, refs[:, 0])


def test_perceptual_loss_function_gradcheck_and_shapes(features):
    a = torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6), requires_grad=True)
    b = torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    assert torch.autograd.gradcheck(lambda x: perceptual_loss(x, b), (a,))
    with pytest.raises(ValueError, match="feature maps must be equal"):
        perceptual_loss(a, b[:, :1])
    with pytest.raises(ValueError, match="layer must be one of"):
        PerceptualLoss(features, layer="pool3")
