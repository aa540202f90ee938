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


_CACHE: dict[tuple[int, int, torch.device], dict[str, Tensor]] = {}


def dft_matrices(n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Cosine and sine matrices ``(n, n)`` float32: ``C[k, m] = cos(2 pi k m / n)``, ``S`` with sin.

    Angles are reduced modulo ``n`` in integers before the trigonometry, in float64, so large
    ``k * m`` keep full precision. Both matrices are symmetric.
    """
    k = torch.arange(n, dtype=torch.int64)
    angle = (torch.outer(k, k) % n).to(torch.float64) * (2.0 * math.pi / n)
    return torch.cos(angle).to(device, torch.float32), torch.sin(angle).to(device, torch.float32)


def _plan(h: int, w: int, device: torch.device) -> dict[str, Tensor]:
    """The product matrices of :func:`_rdft2_t` / :func:`_irdft2_t` for ``h x w``, cached.

    Tensors made while a tracer runs (fake tensors under ``torch.export``) are not cached; run the
    module once eagerly before exporting so the trace embeds the cached matrices as constants.
    """
    key = (h, w, torch.device(device))
    if key in _CACHE:
        return _CACHE[key]
    wh = w // 2 + 1
    ch, sh = dft_matrices(h, device)
    cw, sw = dft_matrices(w, device)
    # Inverse along W from the half spectrum: the DC (and, for even W, Nyquist) column counts once,
    # the others twice (their conjugate half); 1 / (H W) normalises the round trip.
    weight = torch.full((wh, 1), 2.0, device=device)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    weight = weight / (h * w)
    plan = {
        "fwd_w": torch.cat([cw[:, :wh], -sw[:, :wh]], dim=1),  # (W, 2wh)
        "fwd_h": torch.cat([ch, sh], dim=1),  # (H, 2H)
        "inv_h": torch.cat([torch.cat([ch, sh], dim=1), torch.cat([-sh, ch], dim=1)], dim=0),  # (2H, 2H)
        "inv_w_cos": cw[:wh] * weight,  # (wh, W)
        "inv_w_sin": sw[:wh] * weight,  # (wh, W)
    }
    if all(type(t) is Tensor for t in plan.values()):  # real tensors, not a tracer's stand-ins
        _CACHE[key] = plan
    return plan


def _rdft2_t(x: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`rdft2` returning the *transposed* half spectra ``(..., W // 2 + 1, H)``.

    Every product is ``rows @ fixed matrix`` (one large GEMM, no broadcast batched products), and
    C, S are symmetric, so transposing is free algebra: with ``A = x (C_w - i S_w)``,
    ``X^T = A^T (C_h - i S_h)``.
    """
    h, w = x.shape[-2:]
    wh = w // 2 + 1
    plan = _plan(h, w, x.device)
    # Dense inputs let matmul fold every leading dim into one GEMM (channels-last would not).
    a = (x.contiguous() @ plan["fwd_w"]).transpose(-1, -2).contiguous()  # (..., 2wh, H): [A_r^T; A_i^T]
    y = a @ plan["fwd_h"]  # (..., 2wh, 2H): [[A_r^T C, A_r^T S], [A_i^T C, A_i^T S]]
    real = y[..., :wh, :h] + y[..., wh:, h:]
    imag = y[..., wh:, :h] - y[..., :wh, h:]
    return real, imag


def _irdft2_t(real_t: Tensor, imag_t: Tensor, width: int) -> Tensor:
    """Inverse of :func:`_rdft2_t`: transposed half spectra ``(..., W // 2 + 1, H)`` -> ``(..., H, W)``."""
    wh, h = real_t.shape[-2:]
    plan = _plan(h, width, real_t.device)
    # Along H: B = (C + iS) X  ->  [B_r^T | B_i^T] = [X_r^T | X_i^T] @ [[C, S], [-S, C]].
    b = (torch.cat([real_t, imag_t], dim=-1) @ plan["inv_h"]).transpose(-1, -2).contiguous()  # (..., 2H, wh)
    # Along W (half spectrum -> real): x = B_r @ (w cos) - B_i @ (w sin).
    return b[..., :h, :] @ plan["inv_w_cos"] - b[..., h:, :] @ plan["inv_w_sin"]


def rdft2(x: Tensor) -> tuple[Tensor, Tensor]:
    """Real-input 2-D DFT over the last two dims, as ``torch.fft.rfft2`` but with matmuls only.

    Args:
        x: ``(..., H, W)`` real float32.

    Returns:
        ``(real, imag)``, each ``(..., H, W // 2 + 1)`` float32, with
        ``X[k, m] = sum_{h, w} x[h, w] exp(-2 pi i (k h / H + m w / W))``.
    """
    real_t, imag_t = _rdft2_t(x)
    return real_t.transpose(-1, -2), imag_t.transpose(-1, -2)


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
    if real.shape[-1] != width // 2 + 1 or imag.shape != real.shape:
        raise ValueError(f"half spectra {tuple(real.shape)}/{tuple(imag.shape)} do not match width {width}")
    return _irdft2_t(real.transpose(-1, -2), imag.transpose(-1, -2), width)


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
        real, imag = _rdft2_t(torch.cat([x1, x2], dim=1).float())  # one transform for both inputs
        r1, r2, i1, i2 = real[:, :c], real[:, c:], imag[:, :c], imag[:, c:]
        # Orthonormal spectra are the unnormalised ones / sqrt(n): the ratio keeps its form with
        # eps * n, and the orthonormal inverse is sqrt(n) times the unnormalised one.
        den = r2 * r2 + i2 * i2 + eps * n
        out_r = (r2 * r1 + i2 * i1) / den
        out_i = (r2 * i1 - i2 * r1) / den
        out = _irdft2_t(out_r, out_i, x1.shape[-1]) * math.sqrt(n)
    return out.to(dtype)


class WienerDeconvolution(nn.Module):
    """Module form of :func:`wiener_deconvolution` with a fixed ``eps``."""

    def __init__(self, eps: float = 0.01) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return wiener_deconvolution(x1, x2, self.eps)
