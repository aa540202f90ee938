"""Input checks whose errors name the expected and the actual shape (kornia ``core/check`` style)."""

from __future__ import annotations

import torch

__all__ = ["check_images", "check_per_sample", "check_kernels"]


def check_images(images: torch.Tensor, name: str = "images", channels: int | None = 3) -> None:
    """Raise ``ValueError`` unless ``images`` is a floating ``(N, C, H, W)`` tensor (C == ``channels``)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or (channels is not None and images.shape[1] != channels):
        want = f"(N, {channels}, H, W)" if channels is not None else "(N, C, H, W)"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{name}: expected a floating dtype, got {images.dtype}")


def check_per_sample(values: torch.Tensor, n: int, name: str) -> None:
    """Raise ``ValueError`` unless ``values`` is a ``(N,)`` tensor with ``N == n``."""
    if not isinstance(values, torch.Tensor) or values.shape != (n,):
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"{name}: expected shape ({n},), got {got}")


def check_kernels(kernels: torch.Tensor, n: int) -> None:
    """Raise ``ValueError`` unless ``kernels`` is ``(N, K, K)`` with odd K and ``N == n``."""
    if kernels.ndim != 3 or kernels.shape[0] != n or kernels.shape[1] != kernels.shape[2]:
        raise ValueError(f"kernels: expected shape ({n}, K, K), got {tuple(kernels.shape)}")
    if kernels.shape[1] % 2 == 0:
        raise ValueError(f"kernels: expected an odd size K so the kernel has a centre, got {kernels.shape[1]}")
