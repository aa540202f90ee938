"""Pack a small, portable faces folder: aligned context crops of a random subset of identities.

A GPU lent for a short burst receives only a size-capped copy of the project (64 MiB), not the
1 GB crop cache nor the 170 MB photo folder. :func:`pack_faces` writes the train-split faces a run
would cache (the model crop widened by ``context``, :func:`training.faces.aligned_matrix`) as
lossy WebP files plus an ``index.csv`` in the shared folder's format, with the landmarks mapped
into the crop. The result is a valid ``data.faces_dir``: aligning a packed crop on its own
landmarks is the identity transform, so a run on the pack sees the same crops (up to compression)
as a run on the full folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engine.align import warp_to_crop
from engine.errors import UserError
from training.faces import FaceRecord, aligned_matrix, by_identity, read_index, read_rgb, select, write_index, write_rgb

__all__ = ["choose_records", "pack_faces"]


def choose_records(records: Sequence[FaceRecord], max_images: int, per_identity: int, seed: int) -> list[FaceRecord]:
    """Up to ``per_identity`` photos of randomly drawn identities, sources in the split's proportions.

    Each source gets the share of ``max_images`` it has of the given records, filled with whole
    identities in a seeded random order (so a source of many one-photo people is not crowded out by
    one of few well-photographed ones). Identities with a single photo are skipped: a packed run
    still needs references (another photo of the same person) and whole-identity validation.
    """
    if per_identity < 2:
        raise UserError(f"--per-identity must be at least 2 (references need a second photo), got {per_identity}")
    if max_images < 2:
        raise UserError(f"--max-images must be at least 2, got {max_images}")
    rng = np.random.default_rng(seed)
    sources = sorted({r.source for r in records})
    chosen: list[FaceRecord] = []
    for source in sources:
        own = [r for r in records if r.source == source]
        quota = int(max_images * len(own) / len(records))
        groups = [g for g in by_identity(own).values() if len(g) >= 2]
        taken = 0
        for i in rng.permutation(len(groups)):
            take = groups[i][:per_identity]
            if taken + len(take) > quota:
                break
            chosen.extend(take)
            taken += len(take)
    return chosen


def pack_faces(
    faces_dir: str | Path,
    out: str | Path,
    *,
    crop_size: int,
    context: float,
    max_images: int,
    per_identity: int = 3,
    quality: int = 95,
    seed: int = 0,
) -> list[FaceRecord]:
    """Write ``out/index.csv`` and ``out/<source>/<name>.webp`` for a subset of the train split.

    Args:
        faces_dir: the shared faces folder (``index.csv`` + photos).
        out: new folder for the pack.
        crop_size: model crop side ``S`` of the run that will read the pack.
        context: the run's ``data.context``; crops have side ``round(S * context)``.
        max_images: at most this many photos.
        per_identity: at most this many photos per person (at least 2).
        quality: WebP quality 1-100.
        seed: fixes which identities are packed.

    Returns:
        The packed records (paths and landmarks in the pack).
    """
    if not 1 <= quality <= 100:
        raise UserError(f"--quality must be in 1..100, got {quality}")
    out = Path(out)
    if (out / "index.csv").exists():
        raise UserError(f"{out} already holds a pack (index.csv); choose another --out")
    chosen = choose_records(select(read_index(faces_dir), split="train"), max_images, per_identity, seed)
    if not chosen:
        raise UserError(f"no train identities with two or more photos in {faces_dir}")
    packed = []
    for rec in tqdm(chosen, desc="packing faces", unit="img", mininterval=1.0):
        m, side = aligned_matrix(rec.landmarks5, crop_size, context=context)
        crop = warp_to_crop(read_rgb(rec.path), m, side)
        path = out / rec.source / f"{rec.name}.webp"
        write_rgb(path, crop, [cv2.IMWRITE_WEBP_QUALITY, quality])
        points = rec.landmarks5 @ m[:, :2].T + m[:, 2]
        packed.append(FaceRecord(path, rec.identity, rec.source, rec.split, points))
    write_index(out, packed)
    (out / "pack.json").write_text(json.dumps({
        "from": str(Path(faces_dir).resolve()), "images": len(packed), "identities": len(by_identity(packed)),
        "crop_size": crop_size, "context": context, "per_identity": per_identity, "quality": quality, "seed": seed,
    }, indent=1))
    return packed

