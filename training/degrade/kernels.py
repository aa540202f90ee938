"""Blur kernels: camera-shake motion kernels and anisotropic Gaussians, batched and seeded.

Every kernel is a ``(K, K)`` float map, non-negative, summing to 1, with odd K so it has a centre
pixel. A batch of kernels of different sizes is returned zero-padded to the largest size, each
kernel centred, so one convolution serves the whole batch.

Motion kernels follow Boracchi & Foi ("Modeling the performance of image restoration from
motion blur", TIP 2012; the generator behind the paper's [1, 27] kernels): the camera position
is a continuous random walk with inertia (the velocity keeps its speed and turns by Gaussian
jolts), a pull back towards the start (centripetal term) and occasional large shakes that reverse
the direction. The path is simulated on a coarse time grid, densified by linear interpolation,
scaled so its longer side spans the requested size and splatted bilinearly (sub-pixel) into the
kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "camera_shake_trajectories",
    "motion_kernels",
    "anisotropic_gaussian_kernels",
    "delta_kernels",
    "pad_kernels",
]

# Boracchi & Foi simulate 2000 time steps; we simulate fewer and rescale the per-step random terms
# so the coarse walk has the same diffusion (sqrt of the step ratio) and drift (the step ratio).
_REFERENCE_STEPS = 2000
_REFERENCE_LENGTH = 60.0
_ANXIETY = (1e-4, 5e-3)


def _uniform(n: int, low: float, high: float, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device, dtype=dtype)


def camera_shake_trajectories(
    n: int, generator: torch.Generator, *, steps: int = 64, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Random camera-shake paths (Boracchi & Foi's model), one per sample.

    Each path draws its own anxiety (jolt strength, log-uniform in [1e-4, 5e-3]), centripetal pull
    (U[0, 0.7]), Gaussian jolt size (U[0, 10]) and big-shake frequency (U[0, 0.2]), as in the
    reference generator.

    Args:
        n: number of paths.
        generator: source of randomness; the paths live on ``generator.device``.
        steps: time steps simulated (>= 2).
        dtype: floating dtype of the result.

    Returns:
        ``(n, steps, 2)`` positions ``(x, y)`` in arbitrary units (unit speed per reference step).
    """
    if steps < 2:
        raise ValueError(f"steps: expected >= 2, got {steps}")
    device = generator.device
    ratio = _REFERENCE_STEPS / (steps - 1)
    # Log-uniform jolt strength over the range DeblurGAN uses with this generator; the reference
    # default (up to 0.1) tangles the path into a ball at face-crop kernel sizes.
    anxiety = torch.exp(_uniform(n, math.log(_ANXIETY[0]), math.log(_ANXIETY[1]), generator, dtype))
    centripetal = _uniform(n, 0.0, 0.7, generator, dtype)
    gaussian = _uniform(n, 0.0, 10.0, generator, dtype)
    big_shake_p = (_uniform(n, 0.0, 0.2, generator, dtype) * anxiety * ratio).clamp(max=1.0)
    angle = _uniform(n, 0.0, math.pi, generator, dtype)
    v = torch.stack([angle.cos(), angle.sin()], dim=-1)  # unit velocity per reference step
    pos = torch.zeros(n, 2, device=device, dtype=dtype)
    path = [pos]
    for _ in range(steps - 1):
        jolt = torch.randn(n, 2, generator=generator, device=device, dtype=dtype)
        # Reference: dv = anxiety * (gaussian * N(0, 1) - centripetal * x) per step, x in units where
        # the whole path has length 60; our positions are in units of one reference step.
        pull = centripetal[:, None] * pos * (_REFERENCE_LENGTH / _REFERENCE_STEPS) * ratio
        dv = anxiety[:, None] * (gaussian[:, None] * jolt * math.sqrt(ratio) - pull)
        shake = torch.rand(n, generator=generator, device=device, dtype=dtype) < big_shake_p
        turn = math.pi + _uniform(n, -0.5, 0.5, generator, dtype)
        cos, sin = turn.cos(), turn.sin()
        reverse = 2.0 * torch.stack([v[:, 0] * cos - v[:, 1] * sin, v[:, 0] * sin + v[:, 1] * cos], -1)
        v = v + dv + shake[:, None] * reverse
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        pos = pos + v * ratio
        path.append(pos)
    return torch.stack(path, dim=1)


def _splat(points: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinearly splat ``(N, P, 2)`` points (pixel coordinates inside ``[0, size-1]``) -> ``(N, size, size)``."""
    n, p, _ = points.shape
    base = points.floor()
    frac = points - base
    base = base.long()
    out = torch.zeros(n * size * size, device=points.device, dtype=points.dtype)
    offset = (torch.arange(n, device=points.device) * size * size)[:, None]
    for dx in (0, 1):
        for dy in (0, 1):
            x = base[..., 0] + dx
            y = base[..., 1] + dy
            w = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
            inside = (x >= 0) & (x < size) & (y >= 0) & (y < size)
            idx = offset + y.clamp(0, size - 1) * size + x.clamp(0, size - 1)
            out.scatter_add_(0, idx.reshape(-1), (w * inside).reshape(-1))
    return out.view(n, size, size)


def _normalise(kernels: torch.Tensor) -> torch.Tensor:
    return kernels / kernels.sum(dim=(-2, -1), keepdim=True)


def _as_sizes(sizes: Sequence[int] | torch.Tensor) -> list[int]:
    sizes = [int(s) for s in (sizes.tolist() if isinstance(sizes, torch.Tensor) else sizes)]
    bad = [s for s in sizes if s < 3 or s % 2 == 0]
    if not sizes or bad:
        raise ValueError(f"sizes: expected a non-empty list of odd sizes >= 3, got {sizes}")
    return sizes


def motion_kernels(
    sizes: Sequence[int] | torch.Tensor,
    generator: torch.Generator,
    *,
    steps: int = 64,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Camera-shake motion-blur kernels, one per requested size.

    Args:
        sizes: odd kernel sizes, one per kernel (e.g. 13..27 as in the paper's test sets).
        generator: source of randomness; kernels live on ``generator.device``.
        steps: coarse time steps of the simulated shake.
        dtype: floating dtype.

    Returns:
        ``(N, K, K)`` kernels, ``K = max(sizes)``; kernel ``i`` is non-zero only inside its centred
        ``sizes[i]`` box, non-negative and sums to 1. Its path's longer side spans ``sizes[i] - 2``
        pixels, so the size sets the blur length.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> motion_kernels([13, 27], g).shape
        torch.Size([2, 27, 27])
    """
    sizes_l = _as_sizes(sizes)
    n, k = len(sizes_l), max(sizes_l)
    path = camera_shake_trajectories(n, generator, steps=steps, dtype=dtype)
    # Densify: 8 points per coarse step so long paths splat as continuous lines.
    t = torch.linspace(0, 1, 8 * (steps - 1) + 1, device=path.device, dtype=dtype) * (steps - 1)
    i0 = t.floor().long().clamp(max=steps - 2)
    w = (t - i0)[None, :, None]
    dense = path[:, i0] * (1 - w) + path[:, i0 + 1] * w
    lo, hi = dense.amin(dim=1), dense.amax(dim=1)
    extent = torch.as_tensor(sizes_l, device=path.device, dtype=dtype) - 2.0
    scale = extent / (hi - lo).amax(dim=-1).clamp_min(1e-6)
    points = (dense - ((lo + hi) / 2)[:, None]) * scale[:, None, None] + (k - 1) / 2
    return _normalise(_splat(points, k))


def anisotropic_gaussian_kernels(
    sigma1: torch.Tensor, sigma2: torch.Tensor, angle: torch.Tensor, size: int
) -> torch.Tensor:
    """Anisotropic Gaussian blur kernels (the paper's [88] kernels).

    Args:
        sigma1: ``(N,)`` standard deviation along the rotated x axis, pixels (> 0).
        sigma2: ``(N,)`` standard deviation along the rotated y axis, pixels (> 0).
        angle: ``(N,)`` rotation of the first axis, radians.
        size: odd kernel side; about ``6 * max(sigma) + 1`` holds the whole Gaussian.

    Returns:
        ``(N, size, size)`` non-negative kernels summing to 1, on ``sigma1.device``.
    """
    _as_sizes([size])
    n = sigma1.shape[0]
    for name, v in (("sigma2", sigma2), ("angle", angle)):
        if v.shape != sigma1.shape or sigma1.ndim != 1:
            raise ValueError(f"{name}: expected shape ({n},) like sigma1, got {tuple(v.shape)}")
    r = torch.arange(size, device=sigma1.device, dtype=sigma1.dtype) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    u = cos * x + sin * y
    v = -sin * x + cos * y
    q = (u / sigma1[:, None, None]) ** 2 + (v / sigma2[:, None, None]) ** 2
    return _normalise(torch.exp(-0.5 * q))


def delta_kernels(n: int, size: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n, size, size)`` identity kernels (1 at the centre): 'no blur' in a kernel batch."""
    _as_sizes([size])
    k = torch.zeros(n, size, size, device=device, dtype=dtype)
    k[:, size // 2, size // 2] = 1.0
    return k


def pad_kernels(kernels: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad centred ``(N, K, K)`` kernels to ``(N, size, size)`` (``size >= K``, same parity)."""
    k = kernels.shape[-1]
    if size < k or (size - k) % 2:
        raise ValueError(f"size: expected an odd size >= {k}, got {size}")
    p = (size - k) // 2
    return torch.nn.functional.pad(kernels, (p, p, p, p))
