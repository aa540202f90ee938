"""The shipped engine (assets/engine) really restores faces: a check that fails for random weights.

Test-BNL-style faces (blur + noise + low light, paper Table 4 conditions) from identities of the
test split, restored by the default runtime, must come out far closer to the clean crops than the
degraded input is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.runtime import load_enhancer
from training.eval.metrics import psnr
from training.faces import crops_to_tensor, load_aligned, read_index, select, tensor_to_crops
from training.testsets import Condition, degrade_conditions, table4_kernels

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "faces"
N_FACES = 6


@pytest.fixture(scope="module")
def bnl_pairs() -> tuple[np.ndarray, np.ndarray]:
    """``(clean, degraded)`` uint8 RGB ``(N, 128, 128, 3)`` under Test-BNL conditions."""
    torch.set_num_threads(1)
    records = select(read_index(FACES), split="test")
    rng = np.random.default_rng(7)
    picks = [records[i] for i in rng.choice(len(records), N_FACES, replace=False)]
    bank = table4_kernels(seed=0)
    g = torch.Generator().manual_seed(7)
    clean, degraded = [], []
    for i, rec in enumerate(picks):
        crop = load_aligned(rec)
        cond = Condition(kernel=int(rng.integers(len(bank.kernels))), r=(0.15, 0.3)[i % 2], sigma_s=0.1, sigma_c=0.05)
        y = degrade_conditions(crops_to_tensor(crop[None]), [cond], bank, g)
        clean.append(crop)
        degraded.append(tensor_to_crops(y)[0])
    return np.stack(clean), np.stack(degraded)


def test_shipped_engine_restores_test_bnl_faces(bnl_pairs):
    clean, degraded = bnl_pairs
    enhancer = load_enhancer("torch", threads=1)
    restored = enhancer.enhance(degraded)
    assert restored.shape == clean.shape and restored.dtype == np.uint8
    before = np.mean([psnr(c, d) for c, d in zip(clean, degraded)])
    after = np.mean([psnr(c, r) for c, r in zip(clean, restored)])
    # Test-BNL inputs sit near 8 dB; random or identity weights stay there.
    assert after > before + 6.0, f"restored {after:.2f} dB vs degraded {before:.2f} dB"


def test_shipped_engine_files_are_small_and_described():
    engine_dir = ROOT / "assets" / "engine"
    weights = engine_dir / "weights.safetensors"
    assert weights.stat().st_size < 20 * 2**20
    assert (engine_dir / "genotype.json").is_file()
    assert (engine_dir / "MODEL.md").read_text().strip()
