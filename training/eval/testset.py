"""Read a test-set directory written by ``nasfe-train testsets`` and pick what an evaluation uses.

Layout: ``DIR/manifest.csv`` (columns ``set, source, identity, clean, degraded, kernel, r, sigma_s,
sigma_c, b, n, l``; image paths relative to ``DIR``), the crops ``DIR/<set>/<source>/{clean,degraded}/
*.png`` (128x128 aligned RGB, stored as PNG) and ``DIR/kernels.npz`` (the blur kernels the ``kernel``
column names).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.errors import UserError

__all__ = [
    "SETS",
    "SOURCES",
    "Sample",
    "canonical_set",
    "read_manifest",
    "select_samples",
    "KernelBank",
    "read_rgb",
]

#: The paper's test sets (Table 4), in report order.
SETS: tuple[str, ...] = ("Test-B", "Test-N", "Test-L", "Test-BN", "Test-BNL")
#: Face sources, in report order (CelebA, and LFW in VGGFace2's role).
SOURCES: tuple[str, ...] = ("celeba", "lfw")
_REQUIRED = ("set", "source", "identity", "clean", "degraded", "kernel")


def canonical_set(name: str) -> str:
    """``"bnl"``, ``"Test-BNL"``, ``"test_bnl"`` -> ``"Test-BNL"`` (raises :class:`UserError`)."""
    key = name.strip().upper().replace("_", "-")
    key = key.removeprefix("TEST-").removeprefix("TEST")
    canon = f"Test-{key}"
    if canon not in SETS:
        raise UserError(f"unknown test set {name!r}; expected one of {', '.join(SETS)}")
    return canon


@dataclass(frozen=True)
class Sample:
    """One degraded crop and its ground truth; paths are absolute, ``kernel`` is the key of its blur
    kernel in ``kernels.npz`` or ``None`` when the image was not blurred."""

    set: str
    source: str
    identity: str
    clean: Path
    degraded: Path
    kernel: str | None


def read_manifest(root: Path) -> list[Sample]:
    """All rows of ``root/manifest.csv`` as :class:`Sample` (raises :class:`UserError` when missing
    or malformed)."""
    path = root / "manifest.csv"
    if not root.is_dir():
        raise UserError(f"test-set directory not found: {root}")
    if not path.is_file():
        raise UserError(f"no manifest.csv in {root} (build test sets with `nasfe-train testsets`)")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    if not rows:
        raise UserError(f"{path} lists no images")
    kernel_none = {"", "none", "-1", "nan"}
    return [
        Sample(
            set=canonical_set(r["set"]),
            source=r["source"].strip(),
            identity=r["identity"].strip(),
            clean=(root / r["clean"]).resolve(),
            degraded=(root / r["degraded"]).resolve(),
            kernel=None if r["kernel"].strip().lower() in kernel_none else r["kernel"].strip(),
        )
        for r in rows
    ]


def _choose_clean(samples: Sequence[Sample], limit: int | None, rng: np.random.Generator) -> set[Path]:
    """Up to ``limit`` clean photos, taken identity by identity in a seeded random order so that a
    person's photos come together (identification needs several photos of one person)."""
    by_identity: dict[str, set[Path]] = defaultdict(set)
    for s in samples:
        by_identity[s.identity].add(s.clean)
    if limit is None:
        return {p for ps in by_identity.values() for p in ps}
    chosen: list[Path] = []
    for i in rng.permutation(len(by_identity)):
        name = sorted(by_identity)[i]
        chosen.extend(sorted(by_identity[name])[: limit - len(chosen)])
        if len(chosen) >= limit:
            break
    return set(chosen)


def select_samples(
    samples: Sequence[Sample],
    sets: Sequence[str],
    sources: Sequence[str],
    limit: int | None,
    per_image: int,
    seed: int,
) -> dict[tuple[str, str], list[Sample]]:
    """The evaluation's images, grouped by ``(set, source)`` in report order.

    Args:
        samples: the manifest rows.
        sets: canonical set names to keep.
        sources: source names to keep.
        limit: clean photos per source (the same photos in every set), ``None`` for all.
        per_image: degraded versions kept per clean photo and set (the builder may write several,
            e.g. one per blur kernel).
        seed: seeds every choice; the same seed and manifest give the same selection.

    Returns:
        ``{(set, source): samples}``, each list in a seeded random order so that any prefix (the
        subset slow methods run on, the rows of the grids) is a fair sample.
    """
    groups: dict[tuple[str, str], list[Sample]] = {}
    for j, source in enumerate(sources):
        pool = [s for s in samples if s.source == source and s.set in sets]
        clean = _choose_clean(pool, limit, np.random.default_rng([seed, j]))
        for i, set_name in enumerate(sets):
            by_clean: dict[Path, list[Sample]] = defaultdict(list)
            for s in pool:
                if s.set == set_name and s.clean in clean:
                    by_clean[s.clean].append(s)
            rng = np.random.default_rng([seed, j, i])
            picked = []
            for path in sorted(by_clean):
                versions = sorted(by_clean[path], key=lambda s: str(s.degraded))
                keep = rng.choice(len(versions), size=min(per_image, len(versions)), replace=False)
                picked.extend(versions[k] for k in sorted(keep))
            if picked:
                groups[(set_name, source)] = [picked[k] for k in rng.permutation(len(picked))]
    return {k: groups[k] for k in sorted(groups, key=lambda k: (SETS.index(k[0]), sources.index(k[1])))}


class KernelBank:
    """The blur kernels of a test-set directory (``kernels.npz``), read lazily, no pickle."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._npz: np.lib.npyio.NpzFile | None = None

    def get(self, key: str | None) -> np.ndarray | None:
        """The ``(k, k)`` float64 kernel named ``key`` (``None`` -> ``None``)."""
        if key is None:
            return None
        if self._npz is None:
            if not self._path.is_file():
                raise UserError(f"the manifest names blur kernels but {self._path} is missing")
            self._npz = np.load(self._path, allow_pickle=False)
        if key not in self._npz.files:
            raise UserError(f"kernel {key!r} is not in {self._path}")
        return np.asarray(self._npz[key], np.float64)


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (raises :class:`UserError` if unreadable)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
