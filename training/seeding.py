"""Counter-based randomness: every random draw in training is a pure function of named integers.

A batch's images, augmentations, degradations and references come from a generator seeded by
``(run seed, stream, step, rank)``. Nothing depends on how many draws happened before, so a run
resumed at step N sees exactly the batches an uninterrupted run would, and no sampler or generator
state has to be saved. ``numpy.random.SeedSequence`` mixes the keys (well-spread 63-bit seeds).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

__all__ = ["derive_seed", "make_generator", "stream_id"]


def stream_id(name: str) -> int:
    """Stable integer for a stream name (``"train"``, ``"arch"``, ``"val"``...), same in every process."""
    return zlib.crc32(name.encode())


def derive_seed(*keys: int) -> int:
    """Mix non-negative integers into one 63-bit seed."""
    if any(k < 0 for k in keys):
        raise ValueError(f"seed keys must be non-negative, got {keys}")
    a, b = np.random.SeedSequence(list(keys)).generate_state(2, np.uint32)
    return (int(a) << 31) ^ int(b)


def make_generator(*keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded by :func:`derive_seed` of ``keys``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*keys))
    return g
