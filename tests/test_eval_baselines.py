"""Classical baselines on real face crops: each one fixes the degradation it is meant for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.degrade.blur import blur
from training.degrade.kernels import anisotropic_gaussian_kernels, motion_kernels
from training.eval.baselines import BASELINES, noise_sigma, richardson_lucy_deconvolve
from training.eval.metrics import psnr
from training.faces import crops_to_tensor, load_aligned, read_index, select, tensor_to_crops
from training.testsets import Condition, degrade_conditions, table4_kernels

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "faces"


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    """Four aligned 128x128 uint8 RGB crops of different CelebA test photos."""
    torch.set_num_threads(1)
    records = select(read_index(FACES), split="test", sources="celeba")
    return [load_aligned(r) for r in records[:80:20]]


def _gain(method: str, clean: list[np.ndarray], degraded: list[np.ndarray], kernels=None) -> float:
    """Mean PSNR improvement (dB) of ``method`` over the degraded input."""
    kernels = kernels or [None] * len(clean)
    fn = BASELINES[method].fn
    return float(np.mean([psnr(fn(d, k), c) - psnr(d, c) for c, d, k in zip(clean, degraded, kernels)]))


def test_every_baseline_keeps_shape_and_dtype(crops):
    img = crops[0]
    kernel = np.full((5, 5), 1 / 25)
    for b in BASELINES.values():
        out = b.fn(img, kernel)
        assert out.shape == img.shape and out.dtype == np.uint8, b.name
    assert BASELINES["rl"].fn(img, None) is None  # oracle needs a kernel
    assert np.array_equal(BASELINES["degraded"].fn(img, None), img)


def _blurred(crops: list[np.ndarray], kernels: torch.Tensor, noise: float) -> list[np.ndarray]:
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).double() / 255
    y = blur(x, kernels.double())
    y = y + noise * torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=y.dtype)
    return list((y.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_oracle_rl_undoes_motion_blur(crops, noise):
    g = torch.Generator().manual_seed(3)
    kernels = motion_kernels([17] * len(crops), g)
    blurred = _blurred(crops, kernels, noise)
    ks = [k.numpy().astype(np.float64) for k in kernels]
    assert _gain("rl", crops, blurred, ks) > 2.0
    # A wrong kernel (the Gaussian below) must do worse than the true one: the oracle uses its input.
    wrong = anisotropic_gaussian_kernels(torch.full((4,), 3.0), torch.full((4,), 0.5),
                                         torch.zeros(4), 17).double().numpy()
    assert _gain("rl", crops, blurred, list(wrong)) < _gain("rl", crops, blurred, ks)


def test_rl_rejects_bad_kernel(crops):
    with pytest.raises(ValueError, match=r"\(k, k\)"):
        richardson_lucy_deconvolve(crops[0], np.ones(5))


@pytest.mark.parametrize("method", ["nlm", "bm3d"])
def test_denoisers_remove_camera_noise(crops, method):
    # Test-N's noise: Poisson-Gaussian on the Bayer mosaic, demosaiced (spatially correlated).
    clean = crops[:2]
    g = torch.Generator().manual_seed(0)
    test_n = [Condition(sigma_s=0.1, sigma_c=0.1)]
    noisy = [tensor_to_crops(degrade_conditions(crops_to_tensor(c[None]), test_n, table4_kernels(), g))[0]
             for c in clean]
    assert noise_sigma(noisy[0]) > 3 * noise_sigma(clean[0])
    assert _gain(method, clean, noisy) > 1.5


@pytest.mark.parametrize("method", ["histeq", "clahe", "gamma"])
def test_contrast_methods_brighten_low_light(crops, method):
    dark = [(c.astype(np.float64) * 0.2).astype(np.uint8) for c in crops]
    out = [BASELINES[method].fn(d, None) for d in dark]
    assert np.mean(out) > 1.5 * np.mean(dark)
    assert np.std(out) > 1.5 * np.std(dark)
    if method != "clahe":  # CLAHE limits contrast by design; global curves must also gain PSNR
        assert _gain(method, crops, dark) > 3.0
