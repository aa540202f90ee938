"""Signal-dependent sensor noise (Poisson shot noise + Gaussian read noise), in irradiance space."""

from __future__ import annotations

import torch

from training.degrade.checks import check_per_sample

__all__ = ["poisson_gaussian_noise", "noise_variance"]


def noise_variance(irradiance: torch.Tensor, sigma_s: torch.Tensor, sigma_c: torch.Tensor) -> torch.Tensor:
    """Per-pixel noise variance ``L * sigma_s^2 + sigma_c^2`` (CBDNet's model; negative L counts as 0).

    Args:
        irradiance: ``(N, ...)`` irradiance L, nominally in [0, 1].
        sigma_s: ``(N,)`` signal-dependent (shot) noise level per image.
        sigma_c: ``(N,)`` stationary (read) noise level per image.

    Returns:
        Variance with the shape of ``irradiance``.
    """
    n = irradiance.shape[0]
    check_per_sample(sigma_s, n, "sigma_s")
    check_per_sample(sigma_c, n, "sigma_c")
    view = (-1,) + (1,) * (irradiance.ndim - 1)
    s = sigma_s.to(irradiance.dtype).view(view)
    c = sigma_c.to(irradiance.dtype).view(view)
    return irradiance.clamp_min(0) * s**2 + c**2


def poisson_gaussian_noise(
    irradiance: torch.Tensor, sigma_s: torch.Tensor, sigma_c: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Add heteroscedastic Gaussian noise with variance ``L * sigma_s^2 + sigma_c^2``.

    The Gaussian approximation of Poisson-Gaussian sensor noise used by CBDNet and by the paper
    (signal-dependent part ``n_s`` with variance ``L sigma_s^2``, stationary part ``n_c`` with
    variance ``sigma_c^2``). Works on any layout (a raw mosaic ``(N, 1, H, W)`` or RGB
    ``(N, 3, H, W)``); the result is not clipped, so callers decide how the sensor saturates.

    Args:
        irradiance: ``(N, ...)`` float irradiance in [0, 1].
        sigma_s: ``(N,)`` shot-noise level per image (the paper trains on [0.01, 0.16]).
        sigma_c: ``(N,)`` read-noise level per image (the paper trains on [0.01, 0.06]).
        generator: noise source on ``irradiance.device``.

    Returns:
        Noisy irradiance, same shape and dtype.
    """
    std = noise_variance(irradiance, sigma_s, sigma_c).sqrt()
    eps = torch.randn(
        irradiance.shape, generator=generator, device=irradiance.device, dtype=irradiance.dtype
    )
    return irradiance + std * eps
