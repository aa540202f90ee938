"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.build import build_fused, build_supernet, save_fused


@pytest.fixture(scope="session")
def smoke_engine(tmp_path_factory) -> Path:
    """A random-weight ``smoke`` network as training ships it (``genotype.json`` +
    ``weights.safetensors``), plus ``other.json``: the genotype of another derive, for mismatches.

    Read-only: tests that change files copy them first.
    """
    folder = tmp_path_factory.mktemp("smoke_engine")
    genotype = build_supernet("smoke", seed=1).derive()
    genotype.save(folder / "genotype.json")
    save_fused(build_fused(genotype, seed=1).eval(), folder / "weights.safetensors")
    other = build_supernet("smoke", seed=3).derive()
    assert other != genotype
    other.save(folder / "other.json")
    return folder
