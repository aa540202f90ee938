"""Closed-set face identification on restored crops (the paper's Table 5, Top-1 | Top-5).

Protocol. The gallery is the clean aligned crop of every test photo in the evaluation, labelled with
its identity. Each probe is one version (degraded, restored by a method, or the clean photo itself
for the ceiling row) of a test photo; its own clean photo is removed from the gallery for that probe,
so a probe is matched against *other* photos of the same person. Identities are ranked by their
best-matching gallery photo (max cosine similarity); a probe scores Top-k when its identity is among
the k best. A probe whose identity has no other photo in the gallery cannot be identified and is not
used as a probe; its photo stays in the gallery as a distractor for everyone else.

Crops are the 128x128 model crops of :mod:`engine.align`; the recogniser's own fixed crop -> chip
warp (``MobileFaceNet.crop_warp``, built on :func:`engine.align.crop_to_crop_matrix`) maps them to
its 112x112 ArcFace chip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Embedder", "Gallery", "IdentificationResult", "identify", "mobilefacenet_embedder"]

#: Maps ``(N, S, S, 3)`` uint8 RGB model crops to ``(N, D)`` float embeddings.
Embedder = Callable[[np.ndarray], np.ndarray]


def mobilefacenet_embedder(
    weights: Path | None = None, batch_size: int = 32, device: str = "cpu"
) -> Embedder:
    """The evaluation recogniser (MobileFaceNet, ArcFace-trained, 192-D) as an :data:`Embedder`.

    Args:
        weights: converted MobileFaceNet safetensors; ``None`` for the file shipped in ``assets``.
        batch_size: crops per forward pass.
        device: where the network runs.
    """
    import torch

    from engine.recognition.mobilefacenet import load_mobilefacenet

    net = load_mobilefacenet(device=device) if weights is None else load_mobilefacenet(weights, device)
    warps: dict[int, torch.nn.Module] = {}

    @torch.inference_mode()
    def embed(crops: np.ndarray) -> np.ndarray:
        if crops.ndim != 4 or crops.shape[3] != 3 or crops.shape[1] != crops.shape[2]:
            raise ValueError(f"expected (N, S, S, 3) uint8 RGB crops, got {crops.shape}")
        size = crops.shape[1]
        warp = warps.setdefault(size, net.crop_warp(size).to(device))
        out = []
        for i in range(0, len(crops), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[i:i + batch_size])).to(device)
            out.append(net.embed(warp(x.permute(0, 3, 1, 2).float() / 255.0)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, net.embedding_dim), np.float32)

    return embed


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Gallery:
    """Enrolled clean photos: ``embeddings`` ``(G, D)`` (L2-normalised here), one identity and one
    photo key (e.g. the clean image path) per row."""

    embeddings: np.ndarray
    identities: tuple[str, ...]
    keys: tuple[str, ...]

    @classmethod
    def build(cls, embeddings: np.ndarray, identities: Sequence[str], keys: Sequence[str]) -> Gallery:
        """Check lengths and normalise ``embeddings``."""
        if not len(embeddings) == len(identities) == len(keys):
            raise ValueError(
                f"gallery lengths differ: {len(embeddings)} embeddings, {len(identities)} identities,"
                f" {len(keys)} keys"
            )
        return cls(_normalise(embeddings), tuple(identities), tuple(keys))

    @property
    def n_identities(self) -> int:
        return len(set(self.identities))

    def can_identify(self, identity: str, key: str) -> bool:
        """Whether a probe of ``identity`` whose own photo is ``key`` has another photo to match."""
        return any(i == identity and k != key for i, k in zip(self.identities, self.keys))


@dataclass(frozen=True)
class IdentificationResult:
    """Top-k accuracies in percent (``{k: acc}``), the number of probes scored and the number left
    out because their identity had no other photo in the gallery."""

    top: dict[int, float]
    probes: int
    skipped: int


def identify(
    gallery: Gallery,
    probe_embeddings: np.ndarray,
    probe_identities: Sequence[str],
    probe_keys: Sequence[str],
    ks: Sequence[int] = (1, 5),
) -> IdentificationResult:
    """Rank gallery identities for each probe and score Top-k (protocol in the module docstring).

    Args:
        gallery: the enrolled clean photos.
        probe_embeddings: ``(P, D)`` float, any scale (normalised here).
        probe_identities: identity of each probe.
        probe_keys: key of each probe's own clean photo, excluded from its gallery.
        ks: the k of each Top-k.

    Returns:
        The accuracies over the probes whose identity has another photo in the gallery.
    """
    if not len(probe_embeddings) == len(probe_identities) == len(probe_keys):
        raise ValueError("probe embeddings, identities and keys must have one length")
    names = sorted(set(gallery.identities))
    index = {n: i for i, n in enumerate(names)}
    g_id = np.array([index[n] for n in gallery.identities], np.int64)
    g_key = np.array(gallery.keys, dtype=object)
    sims = _normalise(probe_embeddings) @ gallery.embeddings.T  # (P, G)
    hits = {k: 0 for k in ks}
    probes = skipped = 0
    for p, (ident, key) in enumerate(zip(probe_identities, probe_keys)):
        if not gallery.can_identify(ident, key):
            skipped += 1
            continue
        usable, truth = g_key != key, index[ident]
        scores = np.full(len(names), -np.inf)
        np.maximum.at(scores, g_id[usable], sims[p, usable])
        rank = int(np.sum(scores > scores[truth]))
        probes += 1
        for k in ks:
            hits[k] += rank < k
    top = {k: (100.0 * hits[k] / probes if probes else float("nan")) for k in ks}
    return IdentificationResult(top, probes, skipped)
