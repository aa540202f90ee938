"""Identity prior: what clean photos of a person tell the network about that person (paper §3.2).

The paper passes VGGFace pool3 features of clean reference photos ``C_i``, each AdaIN-ed to the
degraded image ``y`` (eq. 7), averaged::

    I_iden = mean_i( sigma(F_y) * (F_i - mu(F_i)) / sigma(F_i) + mu(F_y) )
           = sigma(F_y) * mean_i( instnorm(F_i) ) + mu(F_y)

so the part that depends only on the references, ``mean_i(instnorm(F_i))``, is computed once (at
enrolment, or per training sample from a table of per-photo maps) and the network applies the
degraded image's statistics itself. Features here are dlib ResNet level-2 maps (128 channels, 8x8
for its 150x150 chip; VGGFace is not available), taken from ``engine.align`` model crops through the
fixed crop -> chip warp.

Shapes: model crops ``(..., 3, S, S)`` float32 RGB in [0, 1]; priors ``(128, 8, 8)`` /
``(B, 128, 8, 8)`` float32, per channel zero-mean and unit-variance for one reference (a mean of
several references has smaller variance).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from engine.align import CROP_SIZE
from engine.recognition.dlib_resnet import DlibCropFeatures, DlibResNet, load_dlib_resnet

__all__ = [
    "ID_CHANNELS",
    "ID_SIZE",
    "instance_norm",
    "masked_mean",
    "IdentityEncoder",
    "default_encoder",
    "reference_prior",
    "reference_prior_batched",
    "enroll",
    "ReferenceTable",
]

#: Channels of the identity prior (dlib ResNet level 2).
ID_CHANNELS = 128
#: Side of the identity prior map (level 2 of dlib's 150x150 chip).
ID_SIZE = 8


def instance_norm(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise each map of each sample to zero mean, unit variance over its spatial positions.

    Args:
        features: ``(B, C, h, w)`` float tensor.
        eps: added to the variance; a constant map (e.g. a channel ReLU zeroed) becomes all zeros.

    Returns:
        ``(B, C, h, w)``, differentiable.
    """
    if features.ndim != 4:
        raise ValueError(f"expected (B, C, h, w) features, got shape {tuple(features.shape)}")
    mu = features.mean(dim=(2, 3), keepdim=True)
    var = features.var(dim=(2, 3), keepdim=True, unbiased=False)
    return (features - mu) / torch.sqrt(var + eps)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the reference axis, counting only present references.

    Args:
        values: ``(B, n, ...)`` per-reference values.
        mask: ``(B, n)`` bool, True where a reference is present.

    Returns:
        ``(B, ...)`` mean over present references; all zeros for a row with none.
    """
    if mask.shape != values.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} != references {tuple(values.shape[:2])}")
    w = mask.to(values.dtype).view(*mask.shape, *([1] * (values.ndim - 2)))
    return (values * w).sum(1) / w.sum(1).clamp_min(1.0)


class IdentityEncoder(nn.Module):
    """Model crops -> per-photo identity maps ``instnorm(level2(chip(crop)))``.

    Args:
        recognizer: a :class:`DlibResNet` (frozen); ``None`` loads the shipped weights.
        crop_size: side ``S`` of the ``engine.align`` model crops it is given.

    ``forward``: ``(B, 3, S, S)`` float RGB [0, 1] -> ``(B, 128, 8, 8)``; differentiable.
    """

    def __init__(self, recognizer: DlibResNet | None = None, crop_size: int = CROP_SIZE) -> None:
        super().__init__()
        self.features = DlibCropFeatures(recognizer, crop_size)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return instance_norm(self.features(crops).level2)


@functools.lru_cache(maxsize=4)
def default_encoder(device: str = "cpu") -> IdentityEncoder:
    """Shared frozen encoder with the shipped dlib weights on ``device`` (loaded once per device)."""
    return IdentityEncoder(load_dlib_resnet(device=device)).to(device)


def _encoder_for(crops: torch.Tensor, encoder: IdentityEncoder | None) -> IdentityEncoder:
    return default_encoder(str(crops.device)) if encoder is None else encoder


def reference_prior(crops: torch.Tensor, encoder: IdentityEncoder | None = None) -> torch.Tensor:
    """Identity prior of one person from clean model crops: ``mean_i(instnorm(F_i))``.

    Args:
        crops: ``(n, 3, S, S)`` float32 RGB [0, 1] model crops of clean photos, n >= 1.
        encoder: ``None`` for the shared default on the crops' device.

    Returns:
        ``(128, 8, 8)`` float32.
    """
    if crops.ndim != 4 or crops.shape[0] < 1 or crops.shape[1] != 3:
        raise ValueError(f"expected (n >= 1, 3, S, S) crops, got shape {tuple(crops.shape)}")
    return _encoder_for(crops, encoder)(crops).mean(0)


def reference_prior_batched(
    crops: torch.Tensor, mask: torch.Tensor, encoder: IdentityEncoder | None = None
) -> torch.Tensor:
    """Identity priors of a training batch with a varying number of references per sample.

    Args:
        crops: ``(B, n, 3, S, S)`` float32 RGB [0, 1] reference crops (content of empty slots ignored).
        mask: ``(B, n)`` bool, True where the slot holds a reference.
        encoder: ``None`` for the shared default on the crops' device.

    Returns:
        ``(B, 128, 8, 8)``: mean over present references; zeros for a sample with none.
    """
    if crops.ndim != 5 or crops.shape[2] != 3:
        raise ValueError(f"expected (B, n, 3, S, S) crops, got shape {tuple(crops.shape)}")
    if mask.shape != crops.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} != crops {tuple(crops.shape[:2])}")
    b, n = mask.shape
    flat = mask.reshape(-1).to(crops.device)
    if not flat.any():
        return crops.new_zeros(b, ID_CHANNELS, ID_SIZE, ID_SIZE)
    encoded = _encoder_for(crops, encoder)(crops.reshape(b * n, *crops.shape[2:])[flat])
    maps = encoded.new_zeros(b * n, *encoded.shape[1:])
    maps[flat] = encoded
    return masked_mean(maps.view(b, n, *maps.shape[1:]), mask.to(crops.device))


def _to_tensor(crops_rgb: np.ndarray) -> torch.Tensor:
    if crops_rgb.ndim != 4 or crops_rgb.shape[3] != 3 or crops_rgb.dtype != np.uint8:
        raise ValueError(f"expected (n, S, S, 3) uint8 RGB crops, got {crops_rgb.shape} {crops_rgb.dtype}")
    return torch.from_numpy(np.ascontiguousarray(crops_rgb)).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def enroll(crops_rgb: np.ndarray, encoder: IdentityEncoder | None = None) -> np.ndarray:
    """Enrolment for the camera: clean photos of the user -> the prior the :class:`~engine.enhancer.Enhancer` takes.

    Args:
        crops_rgb: ``(n, S, S, 3)`` uint8 RGB model crops (``engine.align``), n >= 1.

    Returns:
        ``(128, 8, 8)`` float32 numpy array.
    """
    x = _to_tensor(crops_rgb)
    if encoder is not None:
        x = x.to(next(encoder.parameters()).device)
    return reference_prior(x, encoder).cpu().numpy().astype(np.float32)


class ReferenceTable:
    """Per-photo identity maps and embeddings of a face set, for training batches.

    Implements ``training.batches.ReferencePriors`` (``prior(refs, device)``) and gives the
    reference embeddings the identity loss needs (``embeddings(refs, device)``), so each photo goes
    through the recogniser once per run.

    Attributes:
        maps: ``(N, 128, 8, 8)`` per-photo ``instnorm(level2)`` (float16 to halve the memory).
        vectors: ``(N, 128)`` float32 unit-norm dlib embeddings.
    """

    def __init__(self, maps: torch.Tensor, vectors: torch.Tensor) -> None:
        if maps.shape[0] != vectors.shape[0]:
            raise ValueError(f"{maps.shape[0]} maps but {vectors.shape[0]} embeddings")
        self.maps, self.vectors = maps, vectors

    def __len__(self) -> int:
        return self.maps.shape[0]

    @classmethod
    @torch.no_grad()
    def build(
        cls, crops_rgb: np.ndarray, encoder: IdentityEncoder | None = None, batch_size: int = 64,
        device: str | torch.device = "cpu",
    ) -> ReferenceTable:
        """Encode every photo.

        Args:
            crops_rgb: ``(N, S, S, 3)`` uint8 RGB model crops (a memory map is fine: read in batches).
            encoder: ``None`` for the shared default on ``device``.
            batch_size: photos per forward pass.
            device: where the recogniser runs; the table itself is kept on the CPU.
        """
        enc = default_encoder(str(torch.device(device))) if encoder is None else encoder
        dev = next(enc.parameters()).device
        maps, vectors = [], []
        for start in tqdm(range(0, len(crops_rgb), batch_size), desc="reference photos", unit="batch"):
            feats = enc.features(_to_tensor(np.asarray(crops_rgb[start : start + batch_size])).to(dev))
            maps.append(instance_norm(feats.level2).half().cpu())
            vectors.append(feats.embedding.float().cpu())
        empty = torch.zeros(0, ID_CHANNELS, ID_SIZE, ID_SIZE, dtype=torch.float16)
        return cls(torch.cat(maps) if maps else empty, torch.cat(vectors) if vectors else torch.zeros(0, 128))

    def _gather(self, table: torch.Tensor, refs: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        refs = np.asarray(refs)
        if refs.ndim != 2:
            raise ValueError(f"expected (B, n) reference indices, got shape {refs.shape}")
        if refs.size and refs.max() >= len(self):
            raise ValueError(f"reference index {refs.max()} out of range for {len(self)} photos")
        idx = torch.from_numpy(refs.astype(np.int64))
        mask = idx >= 0
        values = table[idx.clamp_min(0)].to(device=device, dtype=torch.float32)
        return values, mask.to(device)

    def prior(self, refs: np.ndarray, device: torch.device) -> torch.Tensor:
        """``refs`` ``(B, n)`` photo indices (``-1`` = empty) -> ``(B, 128, 8, 8)`` mean map (zeros if none)."""
        values, mask = self._gather(self.maps, refs, device)
        return masked_mean(values, mask)

    def embeddings(self, refs: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``refs`` ``(B, n)`` -> ``(B, n, 128)`` reference embeddings and ``(B, n)`` bool mask."""
        return self._gather(self.vectors, refs, device)
