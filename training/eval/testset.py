"""The evaluation's view of a test-set directory written by ``nasfe-train testsets``.

The directory (see :func:`training.testsets.build_testsets`) holds ``manifest.csv`` (one row per
degraded crop), the 128x128 aligned RGB crops as PNG and ``kernels.npz`` (the blur kernels the
``kernel`` column indexes, -1 for none). Each set keeps its own copy of a clean photo, so a photo is
identified across sets by its source and file stem (:attr:`Sample.photo`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserError
from training.seeding import stream_id
from training.testsets import TEST_SETS, KernelBank, read_manifest

__all__ = ["SETS", "SOURCES", "Sample", "canonical_set", "read_samples", "select_samples", "Kernels"]

#: The paper's test sets (Table 4), in report order.
SETS: tuple[str, ...] = TEST_SETS
#: Face sources in report order (CelebA, and LFW in VGGFace2's role); others follow by name.
SOURCES: tuple[str, ...] = ("celeba", "lfw")


def canonical_set(name: str) -> str:
    """``"bnl"``, ``"Test-BNL"``, ``"test_bnl"`` -> ``"Test-BNL"`` (raises :class:`UserError`)."""
    key = name.strip().upper().replace("_", "-").removeprefix("TEST-").removeprefix("TEST")
    canon = f"Test-{key}"
    if canon not in SETS:
        raise UserError(f"unknown test set {name!r}; expected one of {', '.join(SETS)}")
    return canon


@dataclass(frozen=True)
class Sample:
    """One degraded crop and its ground truth (absolute paths); ``kernel`` indexes ``kernels.npz``
    (``None``: not blurred)."""

    set: str
    source: str
    identity: str
    clean: Path
    degraded: Path
    kernel: int | None

    @property
    def photo(self) -> str:
        """The clean photo, the same in every set: ``source:file-stem``."""
        return f"{self.source}:{self.clean.stem}"


def read_samples(root: Path) -> list[Sample]:
    """Every row of ``root/manifest.csv`` (raises :class:`UserError` when missing or malformed)."""
    if not root.is_dir():
        raise UserError(f"test-set directory not found: {root}")
    try:
        rows = read_manifest(root)
    except (KeyError, ValueError) as exc:
        raise UserError(f"{root / 'manifest.csv'} is malformed: {exc}") from exc
    if not rows:
        raise UserError(f"{root / 'manifest.csv'} lists no images")
    return [
        Sample(canonical_set(r.set), r.source, r.identity, (root / r.clean).resolve(),
               (root / r.degraded).resolve(), None if r.kernel < 0 else r.kernel)
        for r in rows
    ]


def _choose_photos(samples: Sequence[Sample], limit: int | None, rng: np.random.Generator) -> set[str]:
    """Up to ``limit`` photos, taken identity by identity in a seeded random order so a person's
    photos come together (identification needs several photos of one person)."""
    by_identity: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        by_identity[s.identity].add(s.photo)
    if limit is None:
        return {p for ps in by_identity.values() for p in ps}
    names = sorted(by_identity)
    chosen: list[str] = []
    for i in rng.permutation(len(names)):
        chosen.extend(sorted(by_identity[names[i]])[: limit - len(chosen)])
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
    """The evaluation's images, grouped by ``(set, source)`` in the order of ``sets`` x ``sources``.

    Args:
        samples: the manifest rows.
        sets: canonical set names to keep.
        sources: source names to keep.
        limit: clean photos per source (the same photos in every set), ``None`` for all.
        per_image: degraded versions kept per clean photo and set (the builder writes up to 104).
        seed: seeds every choice (>= 0); streams are keyed by source and set name, so a set's
            selection does not depend on which other sets or sources are evaluated with it.

    Returns:
        ``{(set, source): samples}``, each list in a seeded random order so that any prefix (the
        subset slow methods run on, the rows of the grids) is a fair sample.
    """
    groups: dict[tuple[str, str], list[Sample]] = {}
    for source in sources:
        pool = [s for s in samples if s.source == source and s.set in sets]
        photos = _choose_photos(pool, limit, np.random.default_rng([seed, stream_id(source)]))
        for set_name in sets:
            by_photo: dict[str, list[Sample]] = defaultdict(list)
            for s in pool:
                if s.set == set_name and s.photo in photos:
                    by_photo[s.photo].append(s)
            rng = np.random.default_rng([seed, stream_id(source), stream_id(set_name)])
            picked = []
            for photo in sorted(by_photo):
                versions = sorted(by_photo[photo], key=lambda s: str(s.degraded))
                keep = rng.choice(len(versions), size=min(per_image, len(versions)), replace=False)
                picked.extend(versions[k] for k in sorted(keep))
            if picked:
                groups[(set_name, source)] = [picked[k] for k in rng.permutation(len(picked))]
    order = {(s, src): (a, b) for a, s in enumerate(sets) for b, src in enumerate(sources)}
    return {k: groups[k] for k in sorted(groups, key=order.__getitem__)}


class Kernels:
    """The blur kernels of a test-set directory (``kernels.npz``), read on first use."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._kernels: np.ndarray | None = None

    def get(self, index: int | None) -> np.ndarray | None:
        """The ``(k, k)`` float64 kernel at ``index`` (``None`` -> ``None``)."""
        if index is None:
            return None
        if self._kernels is None:
            if not self._path.is_file():
                raise UserError(f"the manifest names blur kernels but {self._path} is missing")
            self._kernels = KernelBank.load(self._path).kernels
        if not 0 <= index < len(self._kernels):
            raise UserError(f"kernel {index} is not in {self._path} ({len(self._kernels)} kernels)")
        return np.asarray(self._kernels[index], np.float64)
