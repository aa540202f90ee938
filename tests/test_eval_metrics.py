"""PSNR/SSIM: identities, closed forms and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.eval.metrics import psnr, ssim


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(64, 64, 3)), 0), 1)
    smooth = (smooth - smooth.min()) / np.ptp(smooth)
    return (40 + smooth * 170).astype(np.uint8)


def test_identical_images_are_perfect():
    img = _image()
    assert psnr(img, img.copy()) == math.inf
    assert ssim(img, img.copy()) == pytest.approx(1.0)


@pytest.mark.parametrize("d", [1, 3, 10, 25])
def test_constant_offset_matches_closed_form(d):
    img = _image()
    assert psnr(img + np.uint8(d), img) == pytest.approx(20 * math.log10(255 / d), abs=1e-9)


def test_psnr_closed_form_for_sparse_error():
    img = _image()
    other = img.copy()
    other[0, 0, 0] = np.uint8(int(other[0, 0, 0]) + 30)
    mse = 30**2 / img.size
    assert psnr(other, img) == pytest.approx(10 * math.log10(255**2 / mse))


def test_ssim_falls_with_noise_and_sees_colour():
    img = _image()
    rng = np.random.default_rng(1)
    values = [ssim(np.clip(img + rng.normal(0, s, img.shape), 0, 255).astype(np.uint8), img)
              for s in (2, 10, 40)]
    assert 1 > values[0] > values[1] > values[2]
    tinted = img.copy()
    tinted[..., 0] = 0  # one channel wiped: the per-channel mean must drop by about a third
    assert ssim(tinted, img) < 0.7


def test_bad_input_names_shapes():
    img = _image()
    with pytest.raises(ValueError, match=r"\(64, 64, 3\).*\(32, 32, 3\)"):
        psnr(img, img[:32, :32])
    with pytest.raises(ValueError, match="uint8"):
        ssim(img.astype(np.float32), img.astype(np.float32))
