"""2-D real DFT as matrix products, and the Wiener-deconvolution step of the FFT operator.

TensorRT (and some ONNX runtimes) have no FFT, so the transform is written as multiplications with
fixed cosine/sine matrices for the feature size: the exported graph holds only ``MatMul`` and
element-wise nodes. The matrices are built once per ``(size, device)`` in float64, stored as float32
and cached (:func:`dft_matrices`); an exported graph embeds them as constants.

Only the non-redundant half of the spectrum (``W // 2 + 1`` columns, as ``torch.fft.rfft2``) is
computed: the input is real, so the other half is the complex conjugate and costs nothing to skip.

:func:`rdft2`/:func:`irdft2` are unnormalised like ``torch.fft.rfft2``/``irfft2`` (the DC term is
the sum of all ``H * W`` values); squared, that overflows float16, so :func:`wiener_deconvolution`
always runs in float32 (autocast is switched off inside it).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn

__all__ = ["dft_matrices", "rdft2", "irdft2", "wiener_deconvolution", "WienerDeconvolution"]


_MATRICES: dict[tuple[int, torch.device], tuple[Tensor, Tensor]] = {}


def dft_matrices(n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Cosine and sine matrices ``(n, n)`` float32: ``C[k, m] = cos(2 pi k m / n)``, ``S`` with sin.

    Angles are reduced modulo ``n`` in integers before the trigonometry so large ``k * m`` keep full
    precision. Cached per ``(n, device)``; callers must not modify the result. Tensors made while a
    tracer runs (fake tensors under ``torch.export``) are not cached; run the module once eagerly
    before exporting so the trace embeds the cached matrices as constants.
    """
    key = (n, torch.device(device))
    if key in _MATRICES:
        return _MATRICES[key]
    k = torch.arange(n, dtype=torch.int64)
    angle = (torch.outer(k, k) % n).to(torch.float64) * (2.0 * math.pi / n)
    pair = torch.cos(angle).to(device, torch.float32), torch.sin(angle).to(device, torch.float32)
    if type(pair[0]) is Tensor:  # a real tensor, not a tracer's stand-in
        _MATRICES[key] = pair
    return pair


def rdft2(x: Tensor) -> tuple[Tensor, Tensor]:
    """Real-input 2-D DFT over the last two dims, as ``torch.fft.rfft2`` but with matmuls only.

    Args:
        x: ``(..., H, W)`` real float32.

    Returns:
        ``(real, imag)``, each ``(..., H, W // 2 + 1)`` float32, with
        ``X[k, m] = sum_{h, w} x[h, w] exp(-2 pi i (k h / H + m w / W))``.
    """
    h, w = x.shape[-2:]
    wh = w // 2 + 1
    ch, sh = dft_matrices(h, x.device)
    cw, sw = dft_matrices(w, x.device)
    # Along W (real input): A = x @ (C - iS)[:, :wh]  ->  [A_r | A_i] in one product.
    a = x @ torch.cat([cw[:, :wh], -sw[:, :wh]], dim=1)  # (..., H, 2 wh)
    # Along H (complex input): X = (C - iS) A  ->  stacked [C; S] @ A in one product.
    y = torch.cat([ch, sh], dim=0) @ a  # (..., 2H, 2 wh)
    ca, sa = y[..., :h, :], y[..., h:, :]
    real = ca[..., :wh] + sa[..., wh:]
    imag = ca[..., wh:] - sa[..., :wh]
    return real, imag


def irdft2(real: Tensor, imag: Tensor, width: int) -> Tensor:
    """Inverse of :func:`rdft2` (as ``torch.fft.irfft2(..., s=(H, width))``), with matmuls only.

    Args:
        real: ``(..., H, width // 2 + 1)`` float32 real part of a half spectrum.
        imag: same shape, imaginary part.
        width: ``W`` of the signal (the half spectrum does not say whether it was odd or even).

    Returns:
        ``(..., H, width)`` real float32. As ``irfft``, the imaginary parts of the DC and Nyquist
        columns are ignored (they are zero for a spectrum of a real signal).
    """
    h, wh = real.shape[-2:]
    if wh != width // 2 + 1 or imag.shape != real.shape:
        raise ValueError(f"half spectra {tuple(real.shape)}/{tuple(imag.shape)} do not match width {width}")
    ch, sh = dft_matrices(h, real.device)
    cw, sw = dft_matrices(width, real.device)
    # Along H (inverse, complex): B = (C + iS) X -> [B_r; B_i] = [[C, -S], [S, C]] @ [X_r; X_i].
    b = torch.cat([torch.cat([ch, -sh], dim=1), torch.cat([sh, ch], dim=1)], dim=0) @ torch.cat(
        [real, imag], dim=-2
    )
    # Along W (complex half spectrum -> real): x = sum_m w_m (B_r cos - B_i sin) / (H W), where the
    # DC (and Nyquist, for even W) column counts once and the others twice (conjugate half).
    weight = torch.full((wh, 1), 2.0, device=real.device)
    weight[0] = 1.0
    if width % 2 == 0:
        weight[-1] = 1.0
    basis = torch.cat([cw[:wh], -sw[:wh]], dim=0) * torch.cat([weight, weight], dim=0) / (h * width)
    return torch.cat([b[..., :h, :], b[..., h:, :]], dim=-1) @ basis


def _float32_region(device_type: str) -> contextlib.AbstractContextManager:
    """Disable autocast for ``device_type`` if it is on; otherwise a no-op (nothing to trace)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def wiener_deconvolution(x1: Tensor, x2: Tensor, eps: float = 0.01) -> Tensor:
    """Wiener step of the paper's FFT operator (eq. 2): ``F^-1( conj(X2) X1 / (|X2|^2 + eps) )``.

    ``x2`` plays the blur kernel, ``x1`` the observation; ``eps`` is the inverse signal-to-noise
    ratio (0.01 in the paper). ``F`` is the *orthonormal* 2-D DFT (``norm="ortho"``), so for
    unit-variance (batch-normalised) features ``|X|^2`` averages about 1 and ``eps`` really is a
    1 % noise-to-signal ratio. **Deviation:** with the unnormalised transform, ``|X|^2`` grows with
    ``H * W`` (about 1000 at 32x32), ``eps`` becomes negligible, the step degenerates to a pure
    inverse filter and its gradient ``|X1| / eps`` explodes (measured: 1e13 on alpha in the rt
    supernet at initialisation, against 1e1 with this normalisation). Computed in float32 whatever
    the input dtype or autocast state.

    Args:
        x1: ``(B, C, H, W)`` features.
        x2: ``(B, C, H, W)`` features, same shape.
        eps: regulariser, > 0.

    Returns:
        ``(B, C, H, W)`` in the dtype of ``x1``; equals
        ``torch.fft.irfft2(X2.conj() * X1 / (X2.abs()**2 + eps), norm="ortho")`` with
        ``Xi = torch.fft.rfft2(xi, norm="ortho")``.

    Example:
        >>> y = wiener_deconvolution(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8))
        >>> y.shape
        torch.Size([1, 4, 8, 8])
    """
    if x1.shape != x2.shape or x1.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    dtype = x1.dtype
    with _float32_region(x1.device.type):
        c = x1.shape[1]
        n = x1.shape[-2] * x1.shape[-1]
        real, imag = rdft2(torch.cat([x1, x2], dim=1).float())  # one transform for both inputs
        r1, r2, i1, i2 = real[:, :c], real[:, c:], imag[:, :c], imag[:, c:]
        # Orthonormal spectra are the unnormalised ones / sqrt(n): the ratio keeps its form with
        # eps * n, and the orthonormal inverse is sqrt(n) times the unnormalised one.
        den = r2 * r2 + i2 * i2 + eps * n
        out_r = (r2 * r1 + i2 * i1) / den
        out_i = (r2 * i1 - i2 * r1) / den
        out = irdft2(out_r, out_i, x1.shape[-1]) * math.sqrt(n)
    return out.to(dtype)


class WienerDeconvolution(nn.Module):
    """Module form of :func:`wiener_deconvolution` with a fixed ``eps``."""

    def __init__(self, eps: float = 0.01) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return wiener_deconvolution(x1, x2, self.eps)
