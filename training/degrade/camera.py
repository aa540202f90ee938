"""Camera model around the sensor: response curves (image <-> irradiance) and the RGGB Bayer mosaic.

The paper (after CBDNet) applies low light and noise to the irradiance ``L = M(f^-1(k * x))``: the
camera response ``f`` is undone, the RGB irradiance is sampled by a Bayer colour filter ``M``,
and after noise the image is demosaicked and passed through ``f`` again.

Response curves are pluggable: anything with ``sample`` / ``to_image`` / ``to_irradiance`` (the
:class:`ResponseCurve` protocol) works. :class:`GammaResponse` draws a gamma per image;
:class:`TabulatedResponse` uses measured curves (e.g. the DoRF database CBDNet used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from training.degrade.checks import check_images, check_per_sample

__all__ = [
    "ResponseCurve",
    "GammaResponse",
    "TabulatedResponse",
    "mosaic_rggb",
    "demosaic_bilinear",
]


@runtime_checkable
class ResponseCurve(Protocol):
    """A family of camera response functions ``f: irradiance [0, 1] -> image [0, 1]``, increasing,
    ``f(0) = 0`` and ``f(1) = 1``; each image of a batch uses the member picked by its parameter."""

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``(n,)`` per-image parameters on ``generator.device``."""
        ...

    def to_image(self, irradiance: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        """``f``: ``(N, ...)`` irradiance in [0, 1] -> image values in [0, 1]."""
        ...

    def to_irradiance(self, image: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        """``f^-1``: ``(N, ...)`` image values in [0, 1] -> irradiance in [0, 1]."""
        ...


def _per_sample(param: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    check_per_sample(param, like.shape[0], "param")
    return param.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


@dataclass(frozen=True)
class GammaResponse:
    """``f(L) = L^(1/gamma)`` with gamma drawn uniformly from ``[low, high]`` per image.

    Args:
        low: smallest gamma (>= 1).
        high: largest gamma (>= low). The defaults bracket sRGB's effective 2.2.
    """

    low: float = 1.5
    high: float = 2.5

    def __post_init__(self) -> None:
        if not 1.0 <= self.low <= self.high:
            raise ValueError(f"gamma range: expected 1 <= low <= high, got [{self.low}, {self.high}]")

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.rand(n, generator=generator, device=generator.device)

    def to_image(self, irradiance: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        return irradiance.clamp(0, 1) ** (1 / _per_sample(param, irradiance))

    def to_irradiance(self, image: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        return image.clamp(0, 1) ** _per_sample(param, image)


class TabulatedResponse:
    """Measured response curves, linearly interpolated; the parameter is the curve's row index.

    Args:
        curves: ``(M, P)`` values of ``f`` at irradiance ``linspace(0, 1, P)``, each row strictly
            increasing from 0 to 1 (P >= 2).
    """

    def __init__(self, curves: torch.Tensor) -> None:
        curves = torch.as_tensor(curves, dtype=torch.float32)
        if curves.ndim != 2 or curves.shape[1] < 2:
            raise ValueError(f"curves: expected shape (M, P) with P >= 2, got {tuple(curves.shape)}")
        ok_ends = torch.allclose(curves[:, 0], torch.zeros(1)) and torch.allclose(curves[:, -1], torch.ones(1))
        if not ok_ends or not bool((curves.diff(dim=1) > 0).all()):
            raise ValueError("curves: each row must increase strictly from 0 to 1")
        self.curves = curves

    def __repr__(self) -> str:
        return f"TabulatedResponse({self.curves.shape[0]} curves x {self.curves.shape[1]} points)"

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        m = self.curves.shape[0]
        return torch.randint(m, (n,), generator=generator, device=generator.device).float()

    def _rows(self, param: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        check_per_sample(param, like.shape[0], "param")
        return self.curves.to(like.device, like.dtype)[param.long()]

    def to_image(self, irradiance: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        rows = self._rows(param, irradiance)
        p = rows.shape[1]
        pos = irradiance.clamp(0, 1).reshape(irradiance.shape[0], -1) * (p - 1)
        i0 = pos.floor().long().clamp(max=p - 2)
        w = pos - i0
        out = rows.gather(1, i0) * (1 - w) + rows.gather(1, i0 + 1) * w
        return out.reshape(irradiance.shape)

    def to_irradiance(self, image: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        rows = self._rows(param, image)
        p = rows.shape[1]
        v = image.clamp(0, 1).reshape(image.shape[0], -1).contiguous()
        i0 = (torch.searchsorted(rows.contiguous(), v, right=True) - 1).clamp(0, p - 2)
        lo, hi = rows.gather(1, i0), rows.gather(1, i0 + 1)
        out = (i0 + (v - lo) / (hi - lo)) / (p - 1)
        return out.reshape(image.shape)


def _bayer_masks(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """``(1, 3, H, W)`` 0/1 masks of the RGGB pattern (R at even row and column)."""
    yy = torch.arange(h, device=like.device)[:, None] % 2
    xx = torch.arange(w, device=like.device)[None, :] % 2
    r = (yy == 0) & (xx == 0)
    b = (yy == 1) & (xx == 1)
    g = ~(r | b)
    return torch.stack([r, g, b])[None].to(like.dtype)


def mosaic_rggb(rgb: torch.Tensor) -> torch.Tensor:
    """Sample an RGB image through an RGGB Bayer colour filter.

    Args:
        rgb: ``(N, 3, H, W)`` float (irradiance or image values).

    Returns:
        ``(N, 1, H, W)`` raw mosaic: R at (even row, even column), B at (odd, odd), G elsewhere.
    """
    check_images(rgb, "rgb")
    return (rgb * _bayer_masks(rgb.shape[2], rgb.shape[3], rgb)).sum(dim=1, keepdim=True)


_G_KERNEL = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4
_RB_KERNEL = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4


def demosaic_bilinear(raw: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaicking of an RGGB mosaic (the inverse of :func:`mosaic_rggb` up to interpolation).

    Known samples are kept; each missing one is the mean of its nearest same-colour neighbours.
    Reflect padding keeps the colour pattern intact at the borders, so a flat mosaic stays flat.

    Args:
        raw: ``(N, 1, H, W)`` float mosaic, H and W >= 2.

    Returns:
        ``(N, 3, H, W)`` RGB.
    """
    check_images(raw, "raw", channels=1)
    n, _, h, w = raw.shape
    if h < 2 or w < 2:
        raise ValueError(f"raw: expected H, W >= 2, got {h}x{w}")
    sparse = raw * _bayer_masks(h, w, raw)
    weight = torch.stack([_RB_KERNEL, _G_KERNEL, _RB_KERNEL])[:, None].to(raw.device, raw.dtype)
    return F.conv2d(F.pad(sparse, (1, 1, 1, 1), mode="reflect"), weight, groups=3)
