"""Training batches: clean aligned faces -> augmentation -> synthetic degradation (+ references).

:class:`BatchMaker` is the one place a batch is assembled, for every stage:

1. :class:`training.data.BatchStream` picks the photos of batch ``step`` on this rank;
2. :func:`training.data.augment_crops` jitters the clean crops (webcam-like; also the target);
3. :func:`training.degrade.pipeline.degrade` synthesises blur / noise / low light with the label
   ``c = (b, n, l)``, on the training device;
4. :class:`training.data.ReferencePicker` picks clean reference photos of the same identity
   (never the target; none with probability ``p_no_identity``) and, when a
   :class:`ReferencePriors` table is given, their identity prior is averaged per sample.

All randomness comes from the stream's generator for ``(seed, stream, step, rank)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from engine.errors import UserError
from training.data import BatchStream, FaceSet, ReferencePicker, augment_crops, centre_crops, random_patches
from training.degrade.pipeline import DegradationConfig, degrade
from training.faces import crops_to_tensor
from training.run_config import AugmentConfig, DataConfig
from training.seeding import make_generator, stream_id

__all__ = ["Batch", "ReferencePriors", "BatchMaker", "fixed_batch", "degradation_config", "TASKS"]

#: Single-degradation pretraining tasks, in the order of the label c = (b, n, l).
TASKS: tuple[str, str, str] = ("blur", "noise", "lowlight")


@dataclass
class Batch:
    """One training or validation batch on the training device.

    Attributes:
        clean: ``(B, 3, S, S)`` float32 RGB in [0, 1], the target.
        degraded: ``(B, 3, S, S)`` float32 RGB in [0, 1], the input.
        labels: ``(B, 3)`` float degradation label ``c = (b, n, l)``.
        targets: ``(B,)`` int64 face-set index of each sample's photo.
        refs: ``(B, n)`` int64 reference photo indices into the face set, ``-1`` = empty slot.
        identity: ``(B, C, h, w)`` identity prior (zeros where a sample has none), or ``None``
            when no prior table was given.
        has_identity: ``(B,)`` bool, sample has at least one reference.
    """

    clean: torch.Tensor
    degraded: torch.Tensor
    labels: torch.Tensor
    targets: np.ndarray
    refs: np.ndarray
    identity: torch.Tensor | None
    has_identity: torch.Tensor


class ReferencePriors(Protocol):
    """Identity priors of reference photos, averaged: ``prior(refs) -> (B, C, h, w)``."""

    def prior(self, refs: np.ndarray, device: torch.device) -> torch.Tensor:
        """``refs`` ``(B, n)`` photo indices (``-1`` = none) -> mean prior per row (zeros if none)."""
        ...


def degradation_config(data: DataConfig, task: str | None = None) -> DegradationConfig:
    """The run's degradation ranges; with ``task`` only that degradation, always on (pretraining).

    Args:
        data: data section of the run config (``degrade`` holds field overrides).
        task: ``None`` for the mixed recipe, or one of :data:`TASKS`.
    """
    fields = {f.name for f in dataclasses.fields(DegradationConfig)}
    over = {k: tuple(v) if isinstance(v, list) else v for k, v in data.degrade.items()}
    unknown = sorted(set(over) - fields)
    if unknown:
        raise UserError(f"config data.degrade: unknown key(s) {unknown}; known: {sorted(fields)}")
    cfg = DegradationConfig(**over)
    if task is not None:
        if task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
        cfg = cfg.replace(**{f"p_{t}": float(t == task) for t in TASKS})
    return cfg


class BatchMaker:
    """Batches of one stream (e.g. ``"retrain"``, ``"search-arch"``, ``"pretrain-blur"``).

    Args:
        faces: the aligned face set.
        pool: photo indices this stream draws targets from.
        batch: per-rank batch size.
        seed: run seed.
        stream: stream name; different names give independent orders and draws.
        degradation: degradation ranges and probabilities.
        augment: clean-crop augmentation.
        device: training device (degradation runs there).
        rank, world: process placement (each rank gets its own slice of every global batch).
        references: reference picker (``None`` = no references, e.g. pretraining).
        n_refs: most references per sample.
        p_no_identity: probability of a sample without identity prior.
        priors: identity-prior table; ``None`` leaves ``Batch.identity`` as ``None``.
        patch: train on random ``patch x patch`` windows of the crop (0 = whole crop).
    """

    def __init__(
        self,
        faces: FaceSet,
        pool: np.ndarray,
        batch: int,
        seed: int,
        stream: str,
        degradation: DegradationConfig,
        augment: AugmentConfig,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        references: ReferencePicker | None = None,
        n_refs: int = 3,
        p_no_identity: float = 0.3,
        priors: ReferencePriors | None = None,
        patch: int = 0,
    ) -> None:
        self.faces = faces
        self.patch = patch
        self.stream = BatchStream(pool, batch, seed, stream, rank, world)
        self.degradation = degradation
        self.augment = augment
        self.device = torch.device(device)
        self.references = references
        self.n_refs = n_refs
        self.p_no_identity = p_no_identity
        self.priors = priors

    def __call__(self, step: int) -> Batch:
        """Batch ``step`` of this rank (same arguments, same batch, in any process)."""
        idx = self.stream.indices(step)
        g = self.stream.generator(step)
        context = crops_to_tensor(np.asarray(self.faces.crops[idx]), self.device)
        clean = augment_crops(context, self.faces.crop_size, self.augment, g)
        if self.patch:
            clean = random_patches(clean, self.patch, g)
        y, labels, _ = degrade(clean, self.degradation, self.stream.generator(step, device=self.device))
        refs = (self.references.pick(idx, self.n_refs, self.p_no_identity, g) if self.references is not None
                else _no_refs(len(idx)))
        return _assemble(clean, y, labels, idx, refs, self.priors, self.device)


def _no_refs(n: int) -> np.ndarray:
    return np.full((n, 1), -1, np.int64)


def _assemble(clean: torch.Tensor, y: torch.Tensor, labels: torch.Tensor, targets: np.ndarray, refs: np.ndarray,
              priors: ReferencePriors | None, device: torch.device) -> Batch:
    identity = priors.prior(refs, device) if priors is not None else None
    return Batch(clean=clean, degraded=y, labels=labels.float(), targets=targets, refs=refs, identity=identity,
                 has_identity=torch.from_numpy(refs[:, 0] >= 0).to(device))


def fixed_batch(
    faces: FaceSet,
    pool: np.ndarray,
    size: int,
    seed: int,
    name: str,
    degradation: DegradationConfig,
    device: torch.device,
    references: ReferencePicker | None = None,
    n_refs: int = 3,
    priors: ReferencePriors | None = None,
) -> Batch:
    """A fixed validation batch: exact model crops (no augmentation), seeded degradations, and
    references for every sample that has any.

    Args:
        faces: the aligned face set.
        pool: held-out photo indices (validation identities).
        size: batch size (at most ``len(pool)``).
        seed: run seed.
        name: batch name (different names, different draws).
        degradation: degradation ranges (pretraining validates each task on its own).
        device: where the batch lives.
        references: picker over the held-out photos.
        n_refs: references per sample.
        priors: identity-prior table.
    """
    g = make_generator(seed, stream_id(name))
    idx = np.sort(np.asarray(pool)[torch.randperm(len(pool), generator=g)[:size].numpy()])
    clean = crops_to_tensor(centre_crops(np.asarray(faces.crops[idx]), faces.crop_size), device)
    y, labels, _ = degrade(clean, degradation, make_generator(seed, stream_id(name), 1, device=device))
    refs = references.pick(idx, n_refs, 0.0, g) if references is not None else _no_refs(len(idx))
    return _assemble(clean, y, labels, idx, refs, priors, device)
