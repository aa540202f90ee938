"""Training data: cached aligned faces, identity references, webcam augmentation, batch streams.

The photos are decoded and aligned once (:func:`load_face_set`) into a uint8 cache of *context*
crops: the camera's model crop (:mod:`engine.align` via :mod:`training.faces`) widened by
``context`` about its centre, so that the model crop is exactly the central ``S x S`` window and
alignment jitter has real pixels to rotate in. Everything after that is batched torch:

- :class:`BatchStream`: which images form batch ``step`` on ``rank`` - a pure function of
  (seed, stream, step), each epoch a fresh permutation shared by all ranks and split between
  them (DistributedSampler-like), so resuming needs no sampler state;
- :func:`augment_crops`: flips, alignment jitter (scale, rotation, shift), white balance and
  exposure, on the clean crop (the target sees the same change: webcams vary, the network must
  not "fix" the user's lighting colour);
- :class:`ReferencePicker`: up to ``n`` clean photos of the same identity, never the target;
  with probability ``p_no_identity`` none, so the network also learns to work unenrolled.

Images are RGB throughout: numpy ``(N, H, W, 3)`` uint8, torch ``(N, 3, H, W)`` float32 in [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.errors import UserError
from training.faces import FaceRecord, load_aligned, read_index, select
from training.run_config import PROJECT_ROOT, AugmentConfig, DataConfig
from training.runtime import Runtime
from training.seeding import make_generator, stream_id

__all__ = [
    "FaceSet",
    "load_face_set",
    "split_validation",
    "BatchStream",
    "ReferencePicker",
    "augment_crops",
    "centre_crops",
    "random_patches",
    "resolve_path",
]


def resolve_path(path: str | Path) -> Path:
    """A config path: absolute as is, else relative to the project root."""
    p = Path(path).expanduser()
    return (p if p.is_absolute() else PROJECT_ROOT / p).resolve()


@dataclass(frozen=True)
class FaceSet:
    """The train-split photos as aligned context crops plus who is who.

    Attributes:
        crops: ``(N, C, C, 3)`` uint8 RGB context crops (memory-mapped cache).
        identity: ``(N,)`` int64 identity number of each photo.
        identities: identity names (``source:name``) indexed by those numbers.
        paths: photo paths relative to the faces folder, for reports.
        crop_size: side ``S`` of the model crop; the centre ``S x S`` of a context crop.
        key: cache key (photo list, index file, sizes); names caches derived from this set.
    """

    crops: np.ndarray
    identity: np.ndarray
    identities: tuple[str, ...]
    paths: tuple[str, ...]
    crop_size: int
    key: str = ""

    def __len__(self) -> int:
        return len(self.identity)

    @property
    def context_size(self) -> int:
        return self.crops.shape[1]

    def model_crops(self) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 RGB view of the exact model crops (no copy)."""
        off = (self.context_size - self.crop_size) // 2
        return self.crops[:, off:off + self.crop_size, off:off + self.crop_size]


def _select_records(cfg: DataConfig) -> tuple[Path, list[FaceRecord]]:
    root = resolve_path(cfg.faces_dir)
    records = select(read_index(root), split="train", sources=list(cfg.sources) or None)
    if not records:
        raise UserError(f"{root}/index.csv has no train faces for sources {list(cfg.sources) or 'all'}")
    if cfg.max_per_identity:
        seen: dict[str, int] = {}
        kept = []
        for r in records:
            seen[r.identity] = seen.get(r.identity, 0) + 1
            if seen[r.identity] <= cfg.max_per_identity:
                kept.append(r)
        records = kept
    if cfg.max_images and len(records) > cfg.max_images:
        # Keep whole identities, biggest first, so a small run still has references to use.
        counts: dict[str, int] = {}
        for r in records:
            counts[r.identity] = counts.get(r.identity, 0) + 1
        keep: set[str] = set()
        total = 0
        for name in sorted(counts, key=lambda k: (-counts[k], k)):
            if total >= cfg.max_images:
                break
            keep.add(name)
            total += counts[name]
        records = [r for r in records if r.identity in keep][: cfg.max_images]
    return root, records


def _cache_key(root: Path, records: list[FaceRecord], crop_size: int, side: int) -> str:
    index = root / "index.csv"
    h = hashlib.sha256()
    h.update(json.dumps([str(index), index.stat().st_size, index.stat().st_mtime_ns, crop_size, side]).encode())
    for r in records:
        h.update(str(r.path).encode())
    return h.hexdigest()[:16]


def load_face_set(cfg: DataConfig, crop_size: int, runtime: Runtime | None = None) -> FaceSet:
    """Aligned train faces from the cache, building it on first use (rank 0 builds, others wait).

    Args:
        cfg: data section of the run config (faces folder, sources, cache folder, context).
        crop_size: model crop side ``S``; cached crops have side ``round(S * context)``.
        runtime: for multi-process runs (only rank 0 writes the cache).

    Returns:
        :class:`FaceSet` whose crops are a read-only memory map of ``cache_dir/faces_<key>.npy``.
    """
    runtime = runtime or Runtime()
    side = int(round(crop_size * cfg.context))
    if (side - crop_size) % 2:
        side += 1  # the model crop must sit on whole pixels in the middle of the context crop
    root, records = _select_records(cfg)
    cache_dir = resolve_path(cfg.cache_dir)
    key = _cache_key(root, records, crop_size, side)
    data_file = cache_dir / f"faces_{key}.npy"
    meta_file = cache_dir / f"faces_{key}.json"
    if runtime.is_main and not meta_file.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_file.with_suffix(".tmp.npy")
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(records), side, side, 3))
        for i, rec in enumerate(tqdm(records, desc="aligning faces (once)", unit="img", mininterval=1.0)):
            arr[i] = load_aligned(rec, crop_size, context=side / crop_size)
        arr.flush()
        del arr
        tmp.replace(data_file)
        meta = {"identity": [r.identity for r in records],
                "paths": [str(r.path.relative_to(root)) for r in records],
                "crop_size": crop_size, "side": side}
        meta_file.write_text(json.dumps(meta))
    runtime.barrier()
    meta = json.loads(meta_file.read_text())
    names = sorted(set(meta["identity"]))
    lookup = {n: i for i, n in enumerate(names)}
    crops = np.load(data_file, mmap_mode="r", allow_pickle=False)
    return FaceSet(crops=crops, identity=np.array([lookup[n] for n in meta["identity"]], np.int64),
                   identities=tuple(names), paths=tuple(meta["paths"]), crop_size=crop_size, key=key)


def split_validation(identity: np.ndarray, n_identities: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole identities (each with at least two photos) for validation.

    Args:
        identity: ``(N,)`` identity number per photo.
        n_identities: how many identities to hold out.
        seed: run seed (the choice is a function of it).

    Returns:
        ``(train_idx, val_idx)`` sorted int64 photo indices; no identity appears in both.
    """
    ids, counts = np.unique(identity, return_counts=True)
    eligible = ids[counts >= 2]
    if n_identities > len(eligible) or n_identities >= len(ids):
        raise UserError(f"cannot hold out {n_identities} validation identities: only {len(eligible)} of "
                        f"{len(ids)} identities have two or more photos")
    g = make_generator(seed, stream_id("val-identities"))
    chosen = eligible[torch.randperm(len(eligible), generator=g)[:n_identities].numpy()]
    is_val = np.isin(identity, chosen)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class BatchStream:
    """Indices of the photos in batch ``step`` for one rank; pure function of (seed, stream, step).

    Each epoch is a random permutation of ``pool`` (seeded by the epoch number); global batches of
    ``batch * world`` consecutive entries are cut from the concatenated epochs, and rank ``r`` takes
    its ``batch``-long slice, so the ranks together see every photo once per epoch.

    Args:
        pool: ``(M,)`` photo indices this stream draws from.
        batch: per-rank batch size.
        seed: run seed.
        stream: stream name (different streams, different orders).
        rank: this process's rank.
        world: number of processes.
    """

    def __init__(self, pool: np.ndarray, batch: int, seed: int, stream: str, rank: int = 0, world: int = 1) -> None:
        if len(pool) == 0 or batch < 1:
            raise ValueError(f"BatchStream needs a non-empty pool and batch >= 1 (pool {len(pool)}, batch {batch})")
        self.pool = np.asarray(pool, np.int64)
        self.batch, self.seed, self.stream = batch, seed, stream_id(stream)
        self.rank, self.world = rank, world
        self._perms: OrderedDict[int, np.ndarray] = OrderedDict()

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            g = make_generator(self.seed, self.stream, epoch)
            self._perms[epoch] = self.pool[torch.randperm(len(self.pool), generator=g).numpy()]
            while len(self._perms) > 3:
                self._perms.popitem(last=False)
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        """``(batch,)`` int64 photo indices of ``step`` for this rank."""
        start = (step * self.world + self.rank) * self.batch
        pos = np.arange(start, start + self.batch)
        n = len(self.pool)
        return np.array([self._perm(int(p // n))[p % n] for p in pos], np.int64)

    def generator(self, step: int, device: str | torch.device = "cpu") -> torch.Generator:
        """The generator for everything random in this rank's batch ``step`` (augment, degrade...)."""
        return make_generator(self.seed, self.stream, 1 << 20, step, self.rank, device=device)


class ReferencePicker:
    """Clean reference photos of the target's identity for the identity prior; never the target.

    Args:
        identity: ``(N,)`` identity number per photo (the whole face set).
        pool: photo indices references may come from (e.g. the training photos).
    """

    def __init__(self, identity: np.ndarray, pool: np.ndarray) -> None:
        self.identity = np.asarray(identity)
        groups: dict[int, list[int]] = {}
        for i in np.asarray(pool).tolist():
            groups.setdefault(int(self.identity[i]), []).append(i)
        self.groups = {k: np.array(v, np.int64) for k, v in groups.items()}

    def candidates(self, target: int) -> np.ndarray:
        """Photos of ``target``'s identity in the pool, the target itself excluded."""
        group = self.groups.get(int(self.identity[target]), np.zeros(0, np.int64))
        return group[group != target]

    def pick(self, targets: np.ndarray, n_max: int, p_none: float, generator: torch.Generator) -> np.ndarray:
        """Choose references for each target.

        Each target independently gets none with probability ``p_none`` (or when its identity has
        no other photo), else ``k`` distinct references, ``k`` uniform in ``[1, min(n_max, available)]``.

        Returns:
            ``(B, n_max)`` int64 photo indices, ``-1`` = no reference in that slot.
        """
        if not 0.0 <= p_none <= 1.0 or n_max < 1:
            raise ValueError(f"need 0 <= p_none <= 1 and n_max >= 1, got {p_none}, {n_max}")
        out = np.full((len(targets), n_max), -1, np.int64)
        u = torch.rand(len(targets), generator=generator).tolist()
        for row, (t, ui) in enumerate(zip(np.asarray(targets).tolist(), u)):
            cand = self.candidates(t)
            if ui < p_none or len(cand) == 0:
                continue
            k = 1 + int(torch.randint(min(n_max, len(cand)), (1,), generator=generator))
            out[row, :k] = cand[torch.randperm(len(cand), generator=generator)[:k].numpy()]
        return out


def centre_crops(context: np.ndarray, crop_size: int) -> np.ndarray:
    """The exact model crops ``(N, S, S, 3)`` uint8 RGB out of context crops ``(N, C, C, 3)``."""
    off = (context.shape[1] - crop_size) // 2
    return np.ascontiguousarray(context[:, off:off + crop_size, off:off + crop_size])


def _uniform(n: int, half: float, g: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=g) * 2.0 - 1.0) * half


def augment_crops(context: torch.Tensor, crop_size: int, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Webcam-like augmentation of clean faces, cut to the model crop.

    A random similarity (flip, zoom, rotation, shift about the crop centre) resamples the context
    crop once (bilinear, edges replicated); with all jitter 0 and no flip the output is exactly
    the centre crop. Then white balance (red/blue gains from a colour-temperature shift, green
    tint) and exposure (a gain in stops), clipped to [0, 1].

    Args:
        context: ``(B, 3, C, C)`` float RGB in [0, 1] context crops, on any device (the
            resampling runs there: on a GPU the CPU would otherwise feed it too slowly).
        crop_size: output side ``S <= C``.
        cfg: jitter ranges and probabilities.
        generator: CPU generator, the only randomness (same draws on every device).

    Returns:
        ``(B, 3, S, S)`` float32 RGB in [0, 1], on the device of ``context``.
    """
    if context.ndim != 4 or context.shape[1] != 3 or context.shape[2] != context.shape[3]:
        raise ValueError(f"context: expected (B, 3, C, C), got {tuple(context.shape)}")
    b, side = context.shape[0], context.shape[-1]
    if crop_size > side:
        raise ValueError(f"crop_size {crop_size} larger than the context crop {side}")
    flip = torch.rand(b, generator=generator) < cfg.flip
    scale = 1.0 + _uniform(b, cfg.scale, generator)
    angle = _uniform(b, math.radians(cfg.rotate_deg), generator)
    shift = _uniform(2 * b, cfg.shift, generator).view(b, 2) * 2.0  # crop-side units -> [-1, 1] units
    temp = _uniform(b, cfg.temperature, generator)
    tint = _uniform(b, cfg.tint, generator)
    stops = _uniform(b, cfg.exposure, generator)

    # output normalised coords -> input normalised coords (align_corners=False keeps pixel centres).
    ratio = crop_size / side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    fx = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * fx * ratio, -sin * ratio
    theta[:, 1, 0], theta[:, 1, 1] = sin * fx * ratio, cos * ratio
    theta[:, :, 2] = shift * ratio
    grid = F.affine_grid(theta.to(context.device), [b, 3, crop_size, crop_size], align_corners=False)
    out = F.grid_sample(context.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)

    gain = torch.stack([1.0 + temp, 1.0 + tint, 1.0 - temp], dim=1) * torch.exp2(stops)[:, None]
    return (out * gain.to(context.device)[:, :, None, None]).clamp(0.0, 1.0)


def random_patches(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random ``size x size`` window per image (integer offsets; cheaper search/pretraining steps).

    Args:
        images: ``(B, C, H, W)``.
        size: patch side, ``<= min(H, W)``.
        generator: CPU generator for the offsets.

    Returns:
        ``(B, C, size, size)``, same dtype and device.
    """
    b, _, h, w = images.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"patch size {size} does not fit images of {h}x{w}")
    ys = torch.randint(h - size + 1, (b,), generator=generator).tolist()
    xs = torch.randint(w - size + 1, (b,), generator=generator).tolist()
    return torch.stack([im[:, y:y + size, x:x + size] for im, y, x in zip(images, ys, xs)])
