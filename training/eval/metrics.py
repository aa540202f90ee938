"""Full-reference image quality: PSNR and SSIM as reported in the paper's Tables 1-3, 5 and 6.

Both use scikit-image (``skimage.metrics``) on uint8 RGB images, i.e. over [0, 255] with
``data_range=255``. SSIM follows Wang et al. (2004): 11x11 Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, population covariance; it is computed on each RGB channel separately and the
three channel means are averaged (``channel_axis=-1``), so colour casts lower it. PSNR pools the
squared error of all pixels and channels.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["DATA_RANGE", "psnr", "ssim"]

#: Dynamic range of the uint8 images the metrics are taken over.
DATA_RANGE = 255


def _check_pair(restored: np.ndarray, reference: np.ndarray) -> None:
    if restored.shape != reference.shape or restored.ndim != 3 or restored.shape[2] != 3:
        raise ValueError(
            f"expected two (H, W, 3) images of one shape, got {restored.shape} and {reference.shape}"
        )
    if restored.dtype != np.uint8 or reference.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {restored.dtype} and {reference.dtype}")


def psnr(restored: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of ``restored`` against ``reference``.

    Args:
        restored: ``(H, W, 3)`` uint8 RGB.
        reference: ``(H, W, 3)`` uint8 RGB ground truth.

    Returns:
        ``10 log10(255^2 / MSE)``; ``inf`` for identical images.
    """
    _check_pair(restored, reference)
    if np.array_equal(restored, reference):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, restored, data_range=DATA_RANGE))


def ssim(restored: np.ndarray, reference: np.ndarray) -> float:
    """Structural similarity of ``restored`` to ``reference``, mean of the per-channel SSIMs.

    Args:
        restored: ``(H, W, 3)`` uint8 RGB.
        reference: ``(H, W, 3)`` uint8 RGB ground truth.

    Returns:
        A value in [-1, 1]; 1 for identical images.
    """
    _check_pair(restored, reference)
    return float(
        structural_similarity(
            reference, restored, data_range=DATA_RANGE, channel_axis=-1,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
    )
