"""Classical restorers the paper's tables compare against, run on the same crops as NASFE.

Every baseline maps a degraded ``(H, W, 3)`` uint8 RGB crop to a restored uint8 RGB crop of the same
shape. They are blind (they see only the degraded image, estimating the noise level themselves with
:func:`skimage.restoration.estimate_sigma`) except ``rl``, which is given the TRUE blur kernel
and so is an oracle upper reference for deblurring, not a competitor.

| name | what |
|---|---|
| ``degraded`` | the input itself (the paper's "Noisy" / "Blurry" / "Low-light" / "B+N+L" column) |
| ``histeq`` | global histogram equalisation of luma (YCrCb Y), chroma kept (the paper's "Histeq") |
| ``clahe`` | contrast-limited adaptive histogram equalisation of CIELAB L (clip 2, 8x8 tiles) |
| ``gamma`` | auto-exposure: the gamma curve that takes mean luma to 0.5 |
| ``nlm`` | OpenCV non-local means (``fastNlMeansDenoisingColored``), h = estimated sigma |
| ``bm3d`` | BM3D (``bm3d.bm3d_rgb``, opponent colour space) with the estimated sigma; ~1.7 s a crop |
| ``rl`` | non-blind Richardson-Lucy deconvolution with the true kernel, borders modelled |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.signal import fftconvolve
from skimage.restoration import estimate_sigma

__all__ = ["Baseline", "BASELINES", "noise_sigma", "richardson_lucy_deconvolve"]


@dataclass(frozen=True)
class Baseline:
    """One classical method: a column of the report.

    ``fn(degraded, kernel)`` takes a ``(H, W, 3)`` uint8 RGB crop and the true ``(k, k)`` float blur
    kernel (or ``None`` when the image was not blurred) and returns a uint8 RGB crop, or ``None``
    when the method does not apply (the oracle on a set without blur).
    """

    name: str
    label: str
    fn: Callable[[np.ndarray, np.ndarray | None], np.ndarray | None]
    #: True for methods slow enough to run on a subset only (see ``--slow-limit``).
    slow: bool = False
    #: True when the method reads the true kernel (an oracle, not a blind competitor).
    oracle: bool = False


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 [0, 255], rounding to nearest."""
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def noise_sigma(image: np.ndarray) -> float:
    """Blind estimate of the noise std of a uint8 RGB image, in [0, 255] units.

    Donoho's wavelet median-absolute-deviation estimator, averaged over channels, taken on the
    image halved by 2x2 averaging and doubled back. Camera noise that went through demosaicing is
    correlated between neighbouring pixels, which hides it from the finest wavelet band (a Test-N
    crop with true std 22 reads as 5 at full size, 23 this way); for white noise the halving and
    doubling cancel.
    """
    h, w = image.shape[:2]
    half = cv2.resize(image, (max(w // 2, 1), max(h // 2, 1)), interpolation=cv2.INTER_AREA)
    return 2.0 * float(estimate_sigma(half, average_sigmas=True, channel_axis=-1))


def _identity(degraded: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    return degraded


def _histeq(degraded: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    ycc = cv2.cvtColor(degraded, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.equalizeHist(np.ascontiguousarray(ycc[..., 0]))
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def _clahe(degraded: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    lab = cv2.cvtColor(degraded, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def _gamma(degraded: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    luma = cv2.cvtColor(degraded, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
    mean = float(np.clip(luma.mean(), 1e-3, 1.0 - 1e-3))
    gamma = float(np.clip(np.log(0.5) / np.log(mean), 0.1, 10.0))
    lut = _to_uint8((np.arange(256) / 255.0) ** gamma)
    return cv2.LUT(degraded, lut)


def _nlm(degraded: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    h = float(np.clip(noise_sigma(degraded), 1.0, 50.0))
    bgr = cv2.cvtColor(degraded, cv2.COLOR_RGB2BGR)
    out = cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def _bm3d(degraded: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    import bm3d  # optional extra ("eval"); imported here so the other baselines work without it

    sigma = max(noise_sigma(degraded), 0.5) / 255.0
    return _to_uint8(bm3d.bm3d_rgb(degraded.astype(np.float64) / 255.0, sigma))


def richardson_lucy_deconvolve(
    degraded: np.ndarray, kernel: np.ndarray, iterations: int | None = None
) -> np.ndarray:
    """Non-blind Richardson-Lucy deconvolution with a known kernel and unknown borders.

    The crop is the *valid* part of ``k * x`` for a larger scene ``x`` (pixels beyond the crop blur
    into it), so ``x`` is estimated on the crop grown by the kernel radius and only the crop is
    compared with the data (Bertero & Boccacci, 2005). Padding the crop instead (mirror, FFT wrap)
    does not fit asymmetric motion kernels and rings. Iterations act as the regulariser: many for
    a clean blur, few when the estimated noise is high (``clip(0.25 / sigma, 3, 80)``, sigma in
    [0, 1]; tuned on Test-B and Test-BN crops).

    Args:
        degraded: ``(H, W, 3)`` uint8 RGB, blurred as ``k * x`` (true convolution, kernel centred).
        kernel: ``(k, k)`` non-negative float blur kernel, odd k; normalised to sum 1 here.
        iterations: fixed iteration count, or ``None`` to choose it from the noise level.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    k = np.asarray(kernel, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0 or k.min() < 0 or k.sum() <= 0:
        raise ValueError(f"expected a (k, k) non-negative kernel with odd k, got shape {k.shape}")
    k = (k / k.sum())[..., None]
    flipped = k[::-1, ::-1]
    if iterations is None:
        sigma = max(noise_sigma(degraded) / 255.0, 1e-6)
        iterations = int(np.clip(round(0.25 / sigma), 3, 80))
    y = np.maximum(degraded.astype(np.float64) / 255.0, 1.0 / 255.0)
    p = k.shape[0] // 2
    x = np.pad(y, ((p, p), (p, p), (0, 0)), mode="edge")
    norm = np.maximum(fftconvolve(np.ones_like(y), flipped, mode="full", axes=(0, 1)), 1e-3)
    for _ in range(iterations):
        estimate = np.maximum(fftconvolve(x, k, mode="valid", axes=(0, 1)), 1e-6)
        x = np.maximum(x * fftconvolve(y / estimate, flipped, mode="full", axes=(0, 1)) / norm, 0.0)
    return _to_uint8(x[p:-p, p:-p] if p else x)


def _richardson_lucy(degraded: np.ndarray, kernel: np.ndarray | None) -> np.ndarray | None:
    return None if kernel is None else richardson_lucy_deconvolve(degraded, kernel)


#: All baselines by name, in report column order.
BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("degraded", "Degraded", _identity),
        Baseline("histeq", "Histeq", _histeq),
        Baseline("clahe", "CLAHE", _clahe),
        Baseline("gamma", "Gamma", _gamma),
        Baseline("nlm", "NLM", _nlm),
        Baseline("bm3d", "BM3D", _bm3d, slow=True),
        Baseline("rl", "RL (true k)", _richardson_lucy, oracle=True),
    )
}
