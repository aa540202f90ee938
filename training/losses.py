"""Training losses of the paper (§3.2-3.3): L2, perceptual, identity, and their weighted sum.

    L_final = L2 + lambda_per * L_per + lambda_iden * L_iden        (eq. 9, lambda = 0.04, 0.003)

VGGFace is not available, so the frozen dlib face-recognition ResNet (:mod:`engine.recognition`)
stands in: its level-3 map (64 ch, 17x17 on the 150 chip; about VGGFace pool3's 1/8 resolution) for
the perceptual loss (eq. 10) and its 128-D embedding for the identity loss (eq. 8). Images are
``engine.align`` model crops ``(B, 3, S, S)`` float RGB in [0, 1]; a fixed differentiable warp takes
them to the recogniser's chip, so gradients reach the restored image. The recogniser's weights never
receive gradients and it stays in eval mode.

Each loss is a function on tensors plus a thin ``nn.Module`` (kornia style).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from engine.identity import masked_mean
from engine.recognition import DlibCropFeatures

__all__ = [
    "LAMBDA_PER",
    "LAMBDA_IDEN",
    "l2_loss",
    "perceptual_loss",
    "identity_loss",
    "L2Loss",
    "PerceptualLoss",
    "IdentityLoss",
    "FinalLossOutput",
    "FinalLoss",
]

#: Paper weights (§3.3).
LAMBDA_PER = 0.04
LAMBDA_IDEN = 0.003
#: Keeps ``arccos`` away from +-1, where its derivative is infinite.
_COS_EPS = 1e-6
_LAYERS = ("level3", "level2")


def _at_least_float32(*xs: torch.Tensor) -> list[torch.Tensor]:
    """Half-precision inputs (autocast) are promoted; float64 stays float64 (gradcheck)."""
    dtype = torch.promote_types(torch.float32, xs[0].dtype)
    return [x.to(dtype) for x in xs]


def _check_images(name: str, x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected (B, 3, H, W) images, got shape {tuple(x.shape)}")


def l2_loss(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Mean squared error ``||x_hat - x||^2 / (B C H W)`` (eq. 9's L2, averaged per element).

    Args:
        restored, clean: ``(B, 3, H, W)`` float, same shape.

    Returns:
        Scalar tensor.

    Example:
        >>> l2_loss(torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2))
        tensor(1.)
    """
    _check_images("restored", restored)
    if restored.shape != clean.shape:
        raise ValueError(f"restored shape {tuple(restored.shape)} != clean {tuple(clean.shape)}")
    return F.mse_loss(*_at_least_float32(restored, clean))


def perceptual_loss(restored_features: torch.Tensor, clean_features: torch.Tensor) -> torch.Tensor:
    """Eq. 10: ``1/(N H W) sum |F_x_hat - F_x|`` over channels and positions, averaged over the batch.

    Args:
        restored_features, clean_features: ``(B, N, H, W)`` feature maps of the same layer.

    Returns:
        Scalar tensor (0 when the maps are equal).
    """
    if restored_features.shape != clean_features.shape or restored_features.ndim != 4:
        raise ValueError(
            f"feature maps must be equal (B, N, H, W): {tuple(restored_features.shape)} vs "
            f"{tuple(clean_features.shape)}"
        )
    a, b = _at_least_float32(restored_features, clean_features)
    return (a - b).abs().mean()


def identity_loss(
    embedding: torch.Tensor, references: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 8: mean over references of ``arccos(<F_x_hat, F_Ci>)`` (radians), averaged over samples.

    Args:
        embedding: ``(B, D)`` unit-norm embeddings of the restored images.
        references: ``(B, n, D)`` unit-norm embeddings of clean references of the same person.
        mask: ``(B, n)`` bool, True where a reference is present; ``None`` = all present. Samples
            without any reference do not count; if no sample has one the loss is 0 (still in the graph).

    Returns:
        Scalar tensor in [0, pi].
    """
    if embedding.ndim != 2 or references.ndim != 3 or references.shape[::2] != embedding.shape:
        raise ValueError(
            f"expected embedding (B, D) and references (B, n, D), got {tuple(embedding.shape)} and "
            f"{tuple(references.shape)}"
        )
    if mask is None:
        mask = torch.ones(references.shape[:2], dtype=torch.bool, device=references.device)
    cos = torch.einsum("bd,bnd->bn", *_at_least_float32(embedding, references))
    angles = torch.arccos(cos.clamp(-1.0 + _COS_EPS, 1.0 - _COS_EPS))
    per_sample = masked_mean(angles, mask)
    has_ref = mask.any(dim=1).to(per_sample.dtype)
    return (per_sample * has_ref).sum() / has_ref.sum().clamp_min(1.0)


class L2Loss(nn.Module):
    """Module form of :func:`l2_loss`."""

    def forward(self, restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        return l2_loss(restored, clean)


class PerceptualLoss(nn.Module):
    """Eq. 10 on a dlib feature map (``layer``: ``"level3"`` default, or ``"level2"``) of model crops."""

    def __init__(self, features: DlibCropFeatures | None = None, layer: str = "level3") -> None:
        super().__init__()
        if layer not in _LAYERS:
            raise ValueError(f"layer must be one of {_LAYERS}, got {layer!r}")
        self.features = DlibCropFeatures() if features is None else features
        self.layer = layer

    def forward(self, restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = getattr(self.features(clean), self.layer)
        return perceptual_loss(getattr(self.features(restored), self.layer), target)


class IdentityLoss(nn.Module):
    """Eq. 8 for model crops against reference embeddings ``(B, n, 128)`` (e.g. from
    :class:`engine.identity.ReferenceTable`) or, when ``references`` is ``None``, against the clean
    target itself."""

    def __init__(self, features: DlibCropFeatures | None = None) -> None:
        super().__init__()
        self.features = DlibCropFeatures() if features is None else features

    def forward(
        self, restored: torch.Tensor, references: torch.Tensor | None = None,
        mask: torch.Tensor | None = None, clean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if references is None:
            if clean is None:
                raise ValueError("identity loss needs reference embeddings or the clean target")
            with torch.no_grad():
                references = self.features(clean).embedding[:, None]
            mask = None
        return identity_loss(self.features(restored).embedding, references, mask)


class FinalLossOutput(NamedTuple):
    """Total loss (to back-propagate) and its unweighted parts (scalars, for logging)."""

    total: torch.Tensor
    l2: torch.Tensor
    perceptual: torch.Tensor
    identity: torch.Tensor


class FinalLoss(nn.Module):
    """Eq. 9: ``L2 + lambda_per * L_per + lambda_iden * L_iden`` with one recogniser pass per image.

    Args:
        lambda_per: perceptual weight (paper 0.04).
        lambda_iden: identity weight (paper 0.003).
        features: shared frozen recogniser; ``None`` loads the shipped dlib weights.
        layer: dlib map for the perceptual loss.

    ``forward(restored, clean, ref_embeddings=None, ref_mask=None)``:
        restored: ``(B, 3, S, S)`` RGB [0, 1] network output (gradients flow back to it).
        clean: ``(B, 3, S, S)`` RGB [0, 1] target.
        ref_embeddings: ``(B, n, 128)`` unit-norm dlib embeddings of clean references of each sample's
            person, or ``None`` to use the clean target as the single reference.
        ref_mask: ``(B, n)`` bool presence of each reference (``None`` = all present).
    """

    def __init__(
        self, lambda_per: float = LAMBDA_PER, lambda_iden: float = LAMBDA_IDEN,
        features: DlibCropFeatures | None = None, layer: str = "level3",
    ) -> None:
        super().__init__()
        if layer not in _LAYERS:
            raise ValueError(f"layer must be one of {_LAYERS}, got {layer!r}")
        self.lambda_per, self.lambda_iden, self.layer = lambda_per, lambda_iden, layer
        self.features = DlibCropFeatures() if features is None else features

    def forward(
        self, restored: torch.Tensor, clean: torch.Tensor,
        ref_embeddings: torch.Tensor | None = None, ref_mask: torch.Tensor | None = None,
    ) -> FinalLossOutput:
        l2 = l2_loss(restored, clean)
        with torch.no_grad():
            target = self.features(clean)
        out = self.features(restored)
        per = perceptual_loss(getattr(out, self.layer), getattr(target, self.layer))
        if ref_embeddings is None:
            ref_embeddings, ref_mask = target.embedding[:, None], None
        iden = identity_loss(out.embedding, ref_embeddings, ref_mask)
        total = l2 + self.lambda_per * per + self.lambda_iden * iden
        return FinalLossOutput(total, l2.detach(), per.detach(), iden.detach())
