"""The shared face photos (``/work/shared/faces``): typed index records and aligned model crops.

Training and the test sets both read faces here, and both align them with :mod:`engine.align`,
the same alignment the camera uses, so the network sees the same face layout everywhere.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.align import CROP_SIZE, crop_matrix, landmarks4_from_yunet5, warp_to_crop
from engine.errors import UserError

__all__ = [
    "FaceRecord",
    "AlignJitter",
    "read_index",
    "write_index",
    "select",
    "by_identity",
    "read_rgb",
    "write_rgb",
    "aligned_matrix",
    "load_aligned",
    "crops_to_tensor",
    "tensor_to_crops",
]

_COLUMNS = ("path", "identity", "source", "split") + tuple(f"{a}{i}" for i in range(5) for a in "xy")


@dataclass(frozen=True)
class FaceRecord:
    """One photo of the index.

    Attributes:
        path: absolute path of the image file.
        identity: ``source:name``; identities never cross the train/test split.
        source: ``lfw``, ``celeba`` or ``glint``.
        split: ``train`` or ``test``.
        landmarks5: ``(5, 2)`` float64 pixel coordinates in YuNet order (image-left eye,
            image-right eye, nose tip, left and right mouth corner).
    """

    path: Path
    identity: str
    source: str
    split: str
    landmarks5: np.ndarray = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        """File stem, unique within a source (e.g. ``Aaron_Eckhart_0001``)."""
        return self.path.stem


@dataclass(frozen=True)
class AlignJitter:
    """Random similarity perturbation of the alignment, for augmentation.

    Attributes:
        scale: largest relative zoom (0.05 = +-5 %).
        rotation_deg: largest rotation in degrees.
        shift: largest shift as a fraction of the crop side.
    """

    scale: float = 0.05
    rotation_deg: float = 5.0
    shift: float = 0.03


def read_index(faces_dir: str | Path) -> list[FaceRecord]:
    """Read ``faces_dir/index.csv`` into records (paths made absolute).

    Raises:
        UserError: the folder has no index or the index lacks columns.
    """
    root = Path(faces_dir).expanduser().resolve()
    index = root / "index.csv"
    if not index.is_file():
        raise UserError(f"no face index at {index} (expected the shared faces folder)")
    with index.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{index}: missing columns {', '.join(missing)}")
        rows = list(reader)
    records = []
    for row in rows:
        pts = np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(5)], np.float64)
        records.append(FaceRecord(root / row["path"], row["identity"], row["source"], row["split"], pts))
    return records


def write_index(faces_dir: str | Path, records: Iterable[FaceRecord]) -> None:
    """Write ``faces_dir/index.csv`` for records whose images lie below ``faces_dir`` (the format
    :func:`read_index` reads; landmarks to 1/1000 pixel)."""
    root = Path(faces_dir)
    with (root / "index.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_COLUMNS)
        for r in records:
            w.writerow([r.path.relative_to(root).as_posix(), r.identity, r.source, r.split]
                       + [f"{v:.3f}" for v in r.landmarks5.ravel()])


def select(
    records: Iterable[FaceRecord], *, split: str | None = None, sources: Sequence[str] | str | None = None
) -> list[FaceRecord]:
    """Records of one split and/or some sources (None = any), in index order."""
    if isinstance(sources, str):
        sources = (sources,)
    return [
        r for r in records
        if (split is None or r.split == split) and (not sources or r.source in sources)
    ]


def by_identity(records: Iterable[FaceRecord]) -> dict[str, list[FaceRecord]]:
    """Group records by identity (insertion order kept: first appearance in the index)."""
    groups: dict[str, list[FaceRecord]] = defaultdict(list)
    for r in records:
        groups[r.identity].append(r)
    return dict(groups)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB.

    Raises:
        UserError: the file is missing or is not an image OpenCV can decode.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no image file at {p}")
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"cannot read {p} as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, rgb: np.ndarray, params: Sequence[int] = ()) -> None:
    """Write a ``(H, W, 3)`` uint8 RGB image (format from the suffix, e.g. ``.png``), creating folders.

    ``params`` go to ``cv2.imwrite`` (e.g. ``[cv2.IMWRITE_WEBP_QUALITY, 95]``).

    Raises:
        UserError: the suffix is not an image format or the file cannot be written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        ok = cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
    except cv2.error:
        ok = False
    if not ok:
        raise UserError(f"cannot write an image to {p} (use a .png or .jpg path in a writable folder)")


def aligned_matrix(
    landmarks5: np.ndarray,
    size: int = CROP_SIZE,
    *,
    context: float = 1.0,
    jitter: AlignJitter | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, int]:
    """Affine ``(2, 3)`` image -> crop, and the crop side, for YuNet-order landmarks.

    The crop is the camera's ``size`` model crop widened by ``context`` about its centre (the model
    crop is its central ``size`` x ``size`` when ``context > 1``), then optionally perturbed by a
    random similarity about the centre.
    """
    if context < 1.0:
        raise ValueError(f"context: expected >= 1, got {context}")
    if jitter is not None and rng is None:
        raise ValueError("rng: a np.random.Generator is required with jitter")
    side = int(round(size * context))
    m = np.vstack([crop_matrix(landmarks4_from_yunet5(landmarks5), size), [0.0, 0.0, 1.0]])
    m[:2, 2] += (side - size) / 2
    if jitter is not None:
        s = 1.0 + rng.uniform(-jitter.scale, jitter.scale)
        a = math.radians(rng.uniform(-jitter.rotation_deg, jitter.rotation_deg))
        t = rng.uniform(-jitter.shift, jitter.shift, size=2) * size
        c = side / 2
        rot = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        j = np.eye(3)
        j[:2, :2] = rot
        j[:2, 2] = c - rot @ [c, c] + t
        m = j @ m
    return m[:2], side


def load_aligned(
    record: FaceRecord,
    size: int = CROP_SIZE,
    *,
    context: float = 1.0,
    jitter: AlignJitter | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Read a photo and cut its aligned face crop (the camera's crop; see :func:`aligned_matrix`).

    Args:
        record: the photo.
        size: side of the model crop in pixels.
        context: widen the crop by this factor about its centre (>= 1).
        jitter: random similarity perturbation, or None for the exact alignment.
        rng: randomness for ``jitter`` (required with it).

    Returns:
        ``(S, S, 3)`` uint8 RGB, ``S = round(size * context)``.
    """
    m, side = aligned_matrix(record.landmarks5, size, context=context, jitter=jitter, rng=rng)
    return warp_to_crop(read_rgb(record.path), m, side)


def crops_to_tensor(crops: np.ndarray | Sequence[np.ndarray], device: str | torch.device = "cpu") -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 RGB crops -> ``(N, 3, H, W)`` float32 RGB in [0, 1] on ``device``
    (moved as uint8, a quarter of the bytes, and converted there)."""
    arr = np.asarray(np.stack(crops) if not isinstance(crops, np.ndarray) else crops)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"crops: expected (N, H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    return torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).float().div(255.0)


def tensor_to_crops(images: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` float RGB in [0, 1] -> ``(N, H, W, 3)`` uint8 RGB (rounded, clipped)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected shape (N, 3, H, W), got {tuple(images.shape)}")
    return images.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
