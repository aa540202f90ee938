"""Table-4 test sets: combinatorics, kernels, files, manifest and the identity split."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import torch

from training.faces import read_index, select
from training.testsets import (
    MANIFEST_COLUMNS,
    TEST_SETS,
    KernelBank,
    build_testsets,
    expected_counts,
    read_manifest,
    table4_conditions,
    table4_kernels,
)

torch.set_num_threads(1)
FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "faces"
needs_faces = pytest.mark.skipif(not (FACES / "index.csv").is_file(), reason="shared faces not available")


def test_paper_counts_for_100_clean_images() -> None:
    assert expected_counts(100) == {
        "Test-B": 5200, "Test-N": 600, "Test-L": 2400, "Test-BN": 10400, "Test-BNL": 10400,
    }
    assert expected_counts(3) == {"Test-B": 156, "Test-N": 18, "Test-L": 72, "Test-BN": 312, "Test-BNL": 312}
    assert expected_counts(3, per_image=10) == {s: 30 if s != "Test-N" else 18 for s in TEST_SETS}


def test_conditions_use_the_table_values() -> None:
    c = table4_conditions()
    assert {x.kernel for x in c["Test-B"]} == set(range(52))
    assert all(x.labels == (1, 0, 0) for x in c["Test-B"])
    assert collections.Counter((x.sigma_s, x.sigma_c) for x in c["Test-N"]) == {
        (0.05, 0.05): 2, (0.05, 0.1): 2, (0.1, 0.05): 1, (0.1, 0.1): 1,
    }
    assert sorted({x.r for x in c["Test-L"]}) == [0.1, 0.15, 0.2, 0.25, 0.3, 0.35]
    assert {(x.sigma_s, x.sigma_c) for x in c["Test-L"]} == {(a, b) for a in (0.05, 0.1) for b in (0.05, 0.1)}
    assert all(x.labels == (0, 1, 1) for x in c["Test-L"])
    assert collections.Counter(x.kernel for x in c["Test-BN"]) == {k: 2 for k in range(52)}
    assert {(x.sigma_s, x.sigma_c, x.r) for x in c["Test-BN"]} == {(0.1, 0.05, None)}
    assert {(x.kernel, x.r) for x in c["Test-BNL"]} == {(k, r) for k in range(52) for r in (0.15, 0.3)}
    assert all(x.labels == (1, 1, 1) and x.sigma_s == 0.1 and x.sigma_c == 0.05 for x in c["Test-BNL"])


def test_table4_kernels(tmp_path: Path) -> None:
    bank = table4_kernels(seed=3)
    assert len(bank) == 52 and bank.kernels.shape == (52, 27, 27)
    assert (bank.kind == "motion").sum() == 40 and (bank.kind == "gaussian").sum() == 12
    assert (bank.kernels >= 0).all()
    np.testing.assert_allclose(bank.kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)
    motion = bank.kind == "motion"
    assert set(bank.sizes[motion]) == set(range(13, 28, 2))
    for k, size in zip(bank.kernels[motion], bank.sizes[motion]):
        ys, xs = np.nonzero(k)
        lo, hi = (27 - size) // 2, (27 + size) // 2
        assert ys.min() >= lo and xs.min() >= lo and ys.max() <= hi and xs.max() <= hi
    for s in (bank.sigma1[~motion], bank.sigma2[~motion]):
        assert ((s >= 1) & (s <= 3)).all()
    assert len({k.tobytes() for k in bank.kernels}) == 52
    bank.save(tmp_path / "k.npz")
    loaded = KernelBank.load(tmp_path / "k.npz")
    assert np.array_equal(loaded.kernels, bank.kernels) and list(loaded.kind) == list(bank.kind)
    assert np.array_equal(table4_kernels(seed=3).kernels, bank.kernels)
    assert not np.array_equal(table4_kernels(seed=4).kernels, bank.kernels)


@needs_faces
def test_full_enumeration_files_manifest_and_split(tmp_path: Path) -> None:
    rows = build_testsets(FACES, tmp_path, limit=2, sources=("lfw",), size=48, progress=False)
    counts = collections.Counter(r.set for r in rows)
    assert counts == expected_counts(2)
    header = (tmp_path / "manifest.csv").read_text().splitlines()[0]
    assert header == ",".join(MANIFEST_COLUMNS)
    assert read_manifest(tmp_path) == rows
    assert (tmp_path / "kernels.npz").is_file()
    want = {"Test-B": (1, 0, 0), "Test-N": (0, 1, 0), "Test-L": (0, 1, 1), "Test-BN": (1, 1, 0), "Test-BNL": (1, 1, 1)}
    for r in rows:
        assert (r.b, r.n, r.l) == want[r.set]
        assert (r.kernel >= 0) == bool(r.b) and (r.r < 1) == bool(r.l) and (r.sigma_s > 0) == bool(r.n)
        assert (tmp_path / r.clean).is_file() and (tmp_path / r.degraded).is_file()
    assert len({r.degraded for r in rows}) == len(rows)
    records = read_index(FACES)
    train_ids = {r.identity for r in select(records, split="train")}
    test_ids = {r.identity for r in select(records, split="test")}
    used = {r.identity for r in rows}
    assert used <= test_ids and not used & train_ids


@needs_faces
def test_per_image_subsampling_and_seeds(tmp_path: Path) -> None:
    def build(out: str, seed: int) -> list:
        return build_testsets(
            FACES, tmp_path / out, limit=2, seed=seed, per_image=3, sets=("Test-N", "Test-BNL"),
            size=48, progress=False,
        )

    a, b, c = build("a", 0), build("b", 0), build("c", 1)
    assert collections.Counter((r.set, r.source) for r in a) == {
        (s, src): 6 for s in ("Test-N", "Test-BNL") for src in ("celeba", "lfw")
    }
    assert a == b
    first = a[0].degraded
    assert (tmp_path / "a" / first).read_bytes() == (tmp_path / "b" / first).read_bytes()
    def pixels(out: str, rows: list) -> list[bytes]:
        return [(tmp_path / out / r.degraded).read_bytes() for r in rows]

    assert pixels("a", a) != pixels("c", c)
