"""The paper's synthetic test sets (Table 4): Test-B, Test-N, Test-L, Test-BN and Test-BNL.

Every clean test face (``split == test``, aligned to the model crop with :mod:`training.faces`) is
degraded under every condition of a set; the paper's counts follow for 100 clean images:

========  ===========================================================  ==========  =====
set       conditions per clean image                                   per image   x100
========  ===========================================================  ==========  =====
Test-B    52 kernels (40 motion, sizes 13..27; 12 anisotropic                 52    5200
          Gaussians, sigma in [1, 3])
Test-N    sigma_s in [0.05, 0.1, 0.05] x sigma_c in [0.05, 0.1]                6     600
Test-L    r in {0.1, 0.15, ..., 0.35} x sigma_s in {0.05, 0.1} x                24    2400
          sigma_c in {0.05, 0.1}
Test-BN   52 kernels x sigma_s = 0.1, sigma_c = 0.05, two noise draws        104   10400
Test-BNL  52 kernels x r in {0.15, 0.3}, sigma_s = 0.1, sigma_c = 0.05       104   10400
========  ===========================================================  ==========  =====

Two readings of the table are needed to reach its counts. Test-N lists sigma_s as
``[0.05, 0.1, 0.05]``: taken literally (three entries, 0.05 twice with independent noise draws)
it gives 3 x 2 = 6 conditions and the table's 600; a set of two values would give 400. Test-BN lists
one noise level but 10400 images, twice 100 x 52, so each (image, kernel) gets two independent
noise draws. Test-L's images are noisy as well as dark (the table gives noise levels), so their
label is ``(0, 1, 1)``; labels always say what was applied.

All sets use one camera response, gamma 2.2 (:data:`TEST_GAMMA`), and the default rendering of
:mod:`training.degrade.pipeline` (noise on the Bayer mosaic; low-light images linear); noise is drawn from a generator
seeded by (seed, set, source, image), so a set is reproducible and independent of the others.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.align import CROP_SIZE
from engine.errors import UserError
from training.degrade import (
    DegradationConfig,
    DegradationParams,
    GammaResponse,
    anisotropic_gaussian_kernels,
    apply_degradation,
    motion_kernels,
    pad_kernels,
)
from training.faces import (
    FaceRecord,
    crops_to_tensor,
    load_aligned,
    read_index,
    select,
    tensor_to_crops,
    write_rgb,
)
from training.seeding import derive_seed, make_generator, stream_id

__all__ = [
    "TEST_SETS",
    "TEST_SOURCES",
    "TEST_GAMMA",
    "MANIFEST_COLUMNS",
    "Condition",
    "KernelBank",
    "table4_kernels",
    "table4_conditions",
    "degrade_conditions",
    "expected_counts",
    "choose_clean",
    "ManifestRow",
    "read_manifest",
    "build_testsets",
]

TEST_SETS: tuple[str, ...] = ("Test-B", "Test-N", "Test-L", "Test-BN", "Test-BNL")
#: CelebA and LFW stand in for the paper's CelebA and VGGFace2.
TEST_SOURCES: tuple[str, ...] = ("celeba", "lfw")
TEST_GAMMA = 2.2
MANIFEST_COLUMNS = ("set", "source", "identity", "clean", "degraded", "kernel", "r", "sigma_s", "sigma_c", "b", "n", "l")

_MOTION_SIZES = tuple(range(13, 28, 2))  # 8 sizes x 5 kernels = 40
_MOTION_PER_SIZE = 5
_GAUSSIANS = 12
_GAUSSIAN_SIGMA = (1.0, 3.0)
_GAUSSIAN_SIZE = 21
_KERNEL_SIDE = 27
_TEST_CONFIG = DegradationConfig(crf=GammaResponse(TEST_GAMMA, TEST_GAMMA))


@dataclass(frozen=True)
class Condition:
    """One degradation of a test set; None = not applied (kernel is an index into the bank)."""

    kernel: int | None = None
    r: float | None = None
    sigma_s: float | None = None
    sigma_c: float | None = None

    @property
    def labels(self) -> tuple[int, int, int]:
        """``(b, n, l)`` presence flags."""
        return int(self.kernel is not None), int(self.sigma_s is not None), int(self.r is not None)


@dataclass(frozen=True)
class KernelBank:
    """The test sets' fixed blur kernels (``kernels.npz``).

    Attributes:
        kernels: ``(M, 27, 27)`` float32, each centred, non-negative, summing to 1.
        sizes: ``(M,)`` int, the kernel's own size before padding to 27.
        kind: ``(M,)`` str, ``motion`` or ``gaussian``.
        sigma1, sigma2, angle: ``(M,)`` float Gaussian parameters (NaN for motion kernels).
    """

    kernels: np.ndarray
    sizes: np.ndarray
    kind: np.ndarray
    sigma1: np.ndarray
    sigma2: np.ndarray
    angle: np.ndarray

    def __len__(self) -> int:
        return len(self.kernels)

    def save(self, path: str | Path) -> None:
        """Write the bank as an ``.npz`` of plain arrays (loads without pickle)."""
        np.savez(path, **{k: getattr(self, k) for k in ("kernels", "sizes", "kind", "sigma1", "sigma2", "angle")})

    @classmethod
    def load(cls, path: str | Path) -> KernelBank:
        """Read a bank written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: z[k] for k in ("kernels", "sizes", "kind", "sigma1", "sigma2", "angle")})


def table4_kernels(seed: int = 0) -> KernelBank:
    """Table 4's 52 kernels: 40 camera-shake motion kernels (5 each of sizes 13, 15, ..., 27) and
    12 anisotropic Gaussians (both sigmas uniform in [1, 3], random angle, 21x21), padded to 27x27."""
    g = torch.Generator().manual_seed(derive_seed(seed, stream_id("testset-kernels")))
    sizes = [s for s in _MOTION_SIZES for _ in range(_MOTION_PER_SIZE)]
    motion = motion_kernels(sizes, g)
    lo, hi = _GAUSSIAN_SIGMA
    s1 = lo + (hi - lo) * torch.rand(_GAUSSIANS, generator=g)
    s2 = lo + (hi - lo) * torch.rand(_GAUSSIANS, generator=g)
    angle = torch.pi * torch.rand(_GAUSSIANS, generator=g)
    gauss = pad_kernels(anisotropic_gaussian_kernels(s1, s2, angle, _GAUSSIAN_SIZE), _KERNEL_SIDE)
    nan = np.full(len(sizes), np.nan, np.float32)
    return KernelBank(
        kernels=torch.cat([motion, gauss]).numpy().astype(np.float32),
        sizes=np.array(sizes + [_GAUSSIAN_SIZE] * _GAUSSIANS, np.int64),
        kind=np.array(["motion"] * len(sizes) + ["gaussian"] * _GAUSSIANS),
        sigma1=np.concatenate([nan, s1.numpy()]).astype(np.float32),
        sigma2=np.concatenate([nan, s2.numpy()]).astype(np.float32),
        angle=np.concatenate([nan, angle.numpy()]).astype(np.float32),
    )


def table4_conditions(n_kernels: int = 52) -> dict[str, list[Condition]]:
    """Every condition of every set, per clean image, in a fixed order (see the module docstring)."""
    kernels = range(n_kernels)
    noise_pairs = [(0.05, 0.05), (0.05, 0.1), (0.1, 0.05), (0.1, 0.1)]
    lows = [round(0.1 + 0.05 * i, 2) for i in range(6)]
    return {
        "Test-B": [Condition(kernel=k) for k in kernels],
        "Test-N": [Condition(sigma_s=s, sigma_c=c) for s, c in itertools.product([0.05, 0.1, 0.05], [0.05, 0.1])],
        "Test-L": [Condition(r=r, sigma_s=s, sigma_c=c) for r, (s, c) in itertools.product(lows, noise_pairs)],
        "Test-BN": [Condition(kernel=k, sigma_s=0.1, sigma_c=0.05) for k in kernels for _ in range(2)],
        "Test-BNL": [Condition(kernel=k, r=r, sigma_s=0.1, sigma_c=0.05) for k in kernels for r in (0.15, 0.3)],
    }


def expected_counts(n_clean: int, per_image: int | None = None, n_kernels: int = 52) -> dict[str, int]:
    """Degraded images per set and source for ``n_clean`` clean faces (``per_image`` caps conditions)."""
    return {
        name: n_clean * (len(conds) if per_image is None else min(per_image, len(conds)))
        for name, conds in table4_conditions(n_kernels).items()
    }


def choose_clean(records: Sequence[FaceRecord], source: str, limit: int | None, seed: int) -> list[FaceRecord]:
    """Up to ``limit`` random ``split == test`` faces of ``source`` (all if None), in index order."""
    pool = select(records, split="test", sources=source)
    if not pool:
        raise UserError(f"no test-split faces of source {source!r} in the index")
    if limit is None or limit >= len(pool):
        return pool
    rng = np.random.default_rng(derive_seed(seed, stream_id("testset-clean"), stream_id(source)))
    return [pool[i] for i in sorted(rng.choice(len(pool), size=limit, replace=False))]


def _subsample(conds: list[Condition], per_image: int | None, seed: int) -> list[tuple[int, Condition]]:
    idx = range(len(conds))
    if per_image is not None and per_image < len(conds):
        idx = sorted(np.random.default_rng(seed).choice(len(conds), size=per_image, replace=False))
    return [(int(i), conds[i]) for i in idx]


def degrade_conditions(
    crop: torch.Tensor, conds: Sequence[Condition], bank: KernelBank, generator: torch.Generator
) -> torch.Tensor:
    """Degrade one clean crop under several conditions of one set (same degradation types).

    Args:
        crop: ``(1, 3, H, W)`` float RGB in [0, 1].
        conds: conditions that all apply the same degradations (as within one test set).
        bank: the kernels the conditions index.
        generator: noise source.

    Returns:
        ``(len(conds), 3, H, W)`` float RGB in [0, 1].
    """
    n = len(conds)
    c0 = conds[0]
    if any(c.labels != c0.labels for c in conds):
        raise ValueError("conds: expected conditions of one set (same degradation types)")
    kernels = r = sigma_s = sigma_c = None
    if c0.kernel is not None:
        kernels = torch.from_numpy(bank.kernels[[c.kernel for c in conds]])
    if c0.r is not None:
        r = torch.tensor([c.r for c in conds])
    if c0.sigma_s is not None:
        sigma_s = torch.tensor([c.sigma_s for c in conds])
        sigma_c = torch.tensor([c.sigma_c for c in conds])
    params = DegradationParams.from_values(
        torch.full((n,), TEST_GAMMA), kernels=kernels, r=r, sigma_s=sigma_s, sigma_c=sigma_c
    )
    return apply_degradation(crop.expand(n, -1, -1, -1), params, generator, _TEST_CONFIG)


@dataclass(frozen=True)
class ManifestRow:
    """One degraded test image (paths relative to the test-set folder; neutral values where not applied:
    kernel -1, r 1, sigma 0)."""

    set: str
    source: str
    identity: str
    clean: str
    degraded: str
    kernel: int
    r: float
    sigma_s: float
    sigma_c: float
    b: int
    n: int
    l: int  # noqa: E741 - the paper's name for the low-light flag


def read_manifest(root: str | Path) -> list[ManifestRow]:
    """Read ``root/manifest.csv`` written by :func:`build_testsets`."""
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise UserError(f"no test-set manifest at {path} (build one with 'nasfe-train testsets')")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and set(rows[0]) != set(MANIFEST_COLUMNS):
        raise UserError(f"{path}: expected columns {','.join(MANIFEST_COLUMNS)}, got {','.join(rows[0])}")
    return [
        ManifestRow(
            row["set"], row["source"], row["identity"], row["clean"], row["degraded"], int(row["kernel"]),
            float(row["r"]), float(row["sigma_s"]), float(row["sigma_c"]), int(row["b"]), int(row["n"]), int(row["l"]),
        )
        for row in rows
    ]


def build_testsets(
    faces_dir: str | Path,
    out: str | Path,
    *,
    limit: int | None = 100,
    seed: int = 0,
    per_image: int | None = None,
    sources: Sequence[str] = TEST_SOURCES,
    sets: Sequence[str] = TEST_SETS,
    size: int = CROP_SIZE,
    progress: bool = True,
) -> list[ManifestRow]:
    """Write the Table-4 test sets under ``out`` and return their manifest rows.

    Layout: ``out/<set>/<source>/clean/<name>.png`` (the aligned clean crop),
    ``out/<set>/<source>/degraded/<name>_<condition>.png``, ``out/manifest.csv`` (columns
    :data:`MANIFEST_COLUMNS`) and ``out/kernels.npz`` (:class:`KernelBank`).

    Args:
        faces_dir: the shared faces folder (``index.csv`` + images).
        out: output folder (created).
        limit: clean images per source (the paper: 100); None = every test image.
        seed: fixes the clean-image choice, kernels, subsampling and noise.
        per_image: keep this many randomly chosen conditions per clean image and set instead of
            all of them (None = the exact Table-4 enumeration).
        sources: face sources, each its own set of files.
        sets: which of :data:`TEST_SETS` to build.
        size: model-crop side in pixels.
        progress: show a tqdm bar.
    """
    unknown = [s for s in sets if s not in TEST_SETS]
    if unknown:
        raise UserError(f"unknown test set(s) {', '.join(unknown)}; expected some of {', '.join(TEST_SETS)}")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    if per_image is not None and per_image < 1:
        raise UserError(f"--per-image must be >= 1, got {per_image}")
    records = read_index(faces_dir)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    bank = table4_kernels(seed)
    bank.save(root / "kernels.npz")
    conditions = table4_conditions(len(bank))
    chosen = {src: choose_clean(records, src, limit, seed) for src in sources}
    rows: list[ManifestRow] = []
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        bar = tqdm(total=sum(map(len, chosen.values())), desc="test sets", unit="face", disable=not progress)
        for src, faces in chosen.items():
            for i, rec in enumerate(faces):
                crop = load_aligned(rec, size)
                x = crops_to_tensor(crop[None])
                for name in sets:
                    keys = (seed, stream_id(name), stream_id(src), i)
                    picked = _subsample(conditions[name], per_image, derive_seed(*keys, 1))
                    clean_rel = f"{name}/{src}/clean/{rec.name}.png"
                    write_rgb(root / clean_rel, crop)
                    y = tensor_to_crops(degrade_conditions(x, [c for _, c in picked], bank, make_generator(*keys)))
                    for (ci, cond), img in zip(picked, y):
                        rel = f"{name}/{src}/degraded/{rec.name}_{ci:03d}.png"
                        write_rgb(root / rel, img)
                        b, n, l = cond.labels
                        row = ManifestRow(
                            name, src, rec.identity, clean_rel, rel,
                            -1 if cond.kernel is None else cond.kernel,
                            1.0 if cond.r is None else cond.r,
                            0.0 if cond.sigma_s is None else cond.sigma_s,
                            0.0 if cond.sigma_c is None else cond.sigma_c,
                            b, n, l,
                        )
                        writer.writerow([getattr(row, c) for c in MANIFEST_COLUMNS])
                        rows.append(row)
                bar.update(1)
        bar.close()
    return rows
