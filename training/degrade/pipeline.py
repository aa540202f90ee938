"""The paper's image formation ``y = r * (k * x) + n`` for a batch of faces (section 4, after CBDNet).

Order: blur the clean image ``x`` with ``k``; undo the camera response ``f`` to reach irradiance
``L = f^-1(k * x)``; scale by the low-light factor ``r``; sample with an RGGB Bayer filter and add
Poisson-Gaussian noise to the raw mosaic (noise is born on the sensor, so demosaicking correlates
it across pixels and colours as in a real camera); demosaic; render; clip to [0, 1].

Rendering: images without low light go back through ``f`` (CBDNet's pipeline). Low-light images
are left linear, ``y = r L + n`` (a raw-like dark capture as in ELD, the paper's [73]), by default
(``linear_lowlight=True``). Re-applying ``f`` to ``r L + n`` turns the dark face into grey noise
fog, because ``f``'s steep slope near 0 amplifies the paper's large read noise (sigma_c up to 0.1);
the linear rendering reproduces the paper's degraded-input PSNRs (Test-L 7.9 dB here vs 8.25 dB in
its Table 3, against 11.4 dB with ``f``) while noise-only images keep ``f`` (Test-N 19.4 vs 17.6).

Each degradation is present or absent per image (probabilities in :class:`DegradationConfig`); an
absent one is skipped exactly, so a clean image comes back unchanged, a blur-only image is
exactly ``k * x``, and the mosaic round trip happens only to images that get noise
(``noise_on_mosaic=False`` adds noise to the RGB irradiance instead). The label is
``c = (b, n, l)``: 1 where blur, noise, low light was applied.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from training.degrade.blur import blur
from training.degrade.camera import GammaResponse, ResponseCurve, demosaic_bilinear, mosaic_rggb
from training.degrade.checks import check_images, check_kernels, check_per_sample
from training.degrade.kernels import anisotropic_gaussian_kernels, delta_kernels, motion_kernels, pad_kernels
from training.degrade.noise import poisson_gaussian_noise

__all__ = [
    "DegradationConfig",
    "DegradationParams",
    "Degraded",
    "sample_params",
    "apply_degradation",
    "degrade",
    "Degrader",
]


def _check_range(name: str, rng: tuple[float, float], low: float, high: float) -> None:
    if not (low <= rng[0] <= rng[1] <= high):
        raise ValueError(f"{name}: expected {low} <= min <= max <= {high}, got {rng}")


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges and probabilities of the random degradations (defaults: the paper's section 4).

    Attributes:
        p_blur: probability that an image is blurred.
        p_noise: probability that an image gets sensor noise.
        p_lowlight: probability that an image is darkened.
        p_motion: share of blurred images that get a motion kernel (else an anisotropic Gaussian);
            40/52 matches the test sets' 40 motion + 12 Gaussian kernels.
        motion_sizes: smallest and largest odd motion-kernel size, drawn uniformly over odd sizes.
        gaussian_sigma: range of both Gaussian standard deviations (pixels).
        gaussian_size: odd side of Gaussian kernels (6 * max sigma + 1 holds them whole).
        r: range of the low-light factor applied to irradiance.
        sigma_s: range of the shot-noise level.
        sigma_c: range of the read-noise level.
        crf: camera response family (per-image gamma in [1.5, 2.5] by default).
        noise_on_mosaic: add noise to the Bayer mosaic (True) or to RGB irradiance (False).
        linear_lowlight: leave low-light images in linear irradiance (True, matches the paper's
            test-set statistics) or render them with ``crf`` like the others (False).
        motion_steps: time steps of the simulated camera shake.
    """

    p_blur: float = 0.5
    p_noise: float = 0.5
    p_lowlight: float = 0.5
    p_motion: float = 40 / 52
    motion_sizes: tuple[int, int] = (13, 27)
    gaussian_sigma: tuple[float, float] = (1.0, 3.0)
    gaussian_size: int = 21
    r: tuple[float, float] = (0.05, 0.5)
    sigma_s: tuple[float, float] = (0.01, 0.16)
    sigma_c: tuple[float, float] = (0.01, 0.06)
    crf: ResponseCurve = field(default_factory=GammaResponse)
    noise_on_mosaic: bool = True
    linear_lowlight: bool = True
    motion_steps: int = 64

    def __post_init__(self) -> None:
        for name in ("p_blur", "p_noise", "p_lowlight", "p_motion"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {p}")
        lo, hi = self.motion_sizes
        if lo % 2 == 0 or hi % 2 == 0 or not 3 <= lo <= hi:
            raise ValueError(f"motion_sizes: expected odd 3 <= min <= max, got {self.motion_sizes}")
        if self.gaussian_size % 2 == 0 or self.gaussian_size < 3:
            raise ValueError(f"gaussian_size: expected an odd size >= 3, got {self.gaussian_size}")
        _check_range("gaussian_sigma", self.gaussian_sigma, 1e-3, float("inf"))
        _check_range("r", self.r, 1e-6, 1.0)
        _check_range("sigma_s", self.sigma_s, 0.0, 1.0)
        _check_range("sigma_c", self.sigma_c, 0.0, 1.0)
        if not isinstance(self.crf, ResponseCurve):
            raise TypeError(f"crf: expected a ResponseCurve, got {type(self.crf).__name__}")

    @property
    def kernel_size(self) -> int:
        """Side of the kernel tensor of a sampled batch (largest motion or Gaussian kernel)."""
        return max(self.motion_sizes[1], self.gaussian_size)

    def replace(self, **changes: object) -> DegradationConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DegradationParams:
    """What was applied to each image of a batch; all tensors on one device, first dim N.

    Attributes:
        blur: ``(N,)`` bool, image was blurred.
        noise: ``(N,)`` bool, image got noise.
        lowlight: ``(N,)`` bool, image was darkened.
        kernels: ``(N, K, K)`` float kernels (a centred delta where ``blur`` is False).
        r: ``(N,)`` low-light factor (1 where ``lowlight`` is False).
        sigma_s: ``(N,)`` shot-noise level (0 where ``noise`` is False).
        sigma_c: ``(N,)`` read-noise level (0 where ``noise`` is False).
        crf: ``(N,)`` response-curve parameter (gamma for :class:`GammaResponse`).
    """

    blur: torch.Tensor
    noise: torch.Tensor
    lowlight: torch.Tensor
    kernels: torch.Tensor
    r: torch.Tensor
    sigma_s: torch.Tensor
    sigma_c: torch.Tensor
    crf: torch.Tensor

    def __post_init__(self) -> None:
        n = self.blur.shape[0] if self.blur.ndim == 1 else -1
        for name in ("blur", "noise", "lowlight", "r", "sigma_s", "sigma_c", "crf"):
            check_per_sample(getattr(self, name), n, name)
        check_kernels(self.kernels, n)

    def __len__(self) -> int:
        return self.blur.shape[0]

    @property
    def labels(self) -> torch.Tensor:
        """``(N, 3)`` float class label ``c = (b, n, l)`` (1 = present)."""
        return torch.stack([self.blur, self.noise, self.lowlight], dim=1).float()

    @classmethod
    def from_values(
        cls,
        crf: torch.Tensor,
        *,
        kernels: torch.Tensor | None = None,
        r: torch.Tensor | None = None,
        sigma_s: torch.Tensor | None = None,
        sigma_c: torch.Tensor | None = None,
        kernel_size: int = 3,
    ) -> DegradationParams:
        """Fixed parameters (test sets): a degradation is on for every image iff its values are given.

        Args:
            crf: ``(N,)`` response parameters.
            kernels: ``(N, K, K)`` kernels, or None for no blur (delta kernels of ``kernel_size``).
            r: ``(N,)`` low-light factors, or None.
            sigma_s: ``(N,)`` shot-noise levels; give both sigmas for noise, or neither.
            sigma_c: ``(N,)`` read-noise levels.
            kernel_size: side of the delta kernels used when ``kernels`` is None.
        """
        n, dev = crf.shape[0], crf.device
        if (sigma_s is None) != (sigma_c is None):
            raise ValueError("sigma_s and sigma_c: give both for noise, or neither")
        on, off = torch.ones(n, dtype=torch.bool, device=dev), torch.zeros(n, dtype=torch.bool, device=dev)
        zeros = torch.zeros(n, device=dev)
        return cls(
            blur=on if kernels is not None else off,
            noise=on if sigma_s is not None else off,
            lowlight=on if r is not None else off,
            kernels=kernels if kernels is not None else delta_kernels(n, kernel_size, device=dev),
            r=r if r is not None else torch.ones(n, device=dev),
            sigma_s=sigma_s if sigma_s is not None else zeros,
            sigma_c=sigma_c if sigma_c is not None else zeros,
            crf=crf,
        )


class Degraded(NamedTuple):
    """Result of :func:`degrade`."""

    #: ``(N, 3, H, W)`` float RGB in [0, 1].
    images: torch.Tensor
    #: ``(N, 3)`` float label ``c = (b, n, l)``.
    labels: torch.Tensor
    #: what was applied to each image.
    params: DegradationParams


def _uniform(n: int, rng: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    return rng[0] + (rng[1] - rng[0]) * torch.rand(n, generator=generator, device=generator.device)


def sample_params(n: int, config: DegradationConfig, generator: torch.Generator) -> DegradationParams:
    """Draw per-image degradations for a batch of ``n`` images.

    Args:
        n: batch size.
        config: ranges and probabilities.
        generator: the only source of randomness; parameters live on ``generator.device``.

    Returns:
        :class:`DegradationParams` with kernels of side ``config.kernel_size``.
    """
    dev = generator.device
    on_blur = torch.rand(n, generator=generator, device=dev) < config.p_blur
    on_noise = torch.rand(n, generator=generator, device=dev) < config.p_noise
    on_low = torch.rand(n, generator=generator, device=dev) < config.p_lowlight
    motion = torch.rand(n, generator=generator, device=dev) < config.p_motion
    r, s, c = _uniform(n, config.r, generator), _uniform(n, config.sigma_s, generator), _uniform(n, config.sigma_c, generator)
    lo, hi = config.motion_sizes
    sizes = lo + 2 * torch.randint((hi - lo) // 2 + 1, (n,), generator=generator, device=dev)
    sig1, sig2 = _uniform(n, config.gaussian_sigma, generator), _uniform(n, config.gaussian_sigma, generator)
    angle = _uniform(n, (0.0, torch.pi), generator)
    crf = config.crf.sample(n, generator)

    k = config.kernel_size
    kernels = delta_kernels(n, k, device=dev)
    use_motion = (on_blur & motion).nonzero().squeeze(1)
    use_gauss = (on_blur & ~motion).nonzero().squeeze(1)
    if len(use_motion):
        mk = motion_kernels(sizes[use_motion], generator, steps=config.motion_steps)
        kernels[use_motion] = pad_kernels(mk, k)
    if len(use_gauss):
        gk = anisotropic_gaussian_kernels(sig1[use_gauss], sig2[use_gauss], angle[use_gauss], config.gaussian_size)
        kernels[use_gauss] = pad_kernels(gk, k)
    return DegradationParams(
        blur=on_blur,
        noise=on_noise,
        lowlight=on_low,
        kernels=kernels,
        r=torch.where(on_low, r, torch.ones_like(r)),
        sigma_s=torch.where(on_noise, s, torch.zeros_like(s)),
        sigma_c=torch.where(on_noise, c, torch.zeros_like(c)),
        crf=crf,
    )


def apply_degradation(
    images: torch.Tensor,
    params: DegradationParams,
    generator: torch.Generator,
    config: DegradationConfig | None = None,
) -> torch.Tensor:
    """Degrade ``images`` with given parameters (deterministic except for the noise draw).

    Args:
        images: ``(N, 3, H, W)`` float RGB in [0, 1] (clean, camera-rendered values).
        params: per-image parameters, same N and device.
        generator: noise source on ``images.device``.
        config: supplies the rendering: ``crf`` (the family ``params.crf`` indexes),
            ``noise_on_mosaic`` and ``linear_lowlight``; its ranges are not used. Default config
            if None.

    Returns:
        ``(N, 3, H, W)`` degraded RGB in [0, 1], same dtype.
    """
    check_images(images)
    config = config or DegradationConfig()
    crf = config.crf
    if len(params) != images.shape[0]:
        raise ValueError(f"params: expected {images.shape[0]} images' parameters, got {len(params)}")
    out = images.clamp(0, 1).clone()
    idx = params.blur.nonzero().squeeze(1)
    if len(idx):
        out[idx] = blur(out[idx], params.kernels[idx].to(out.dtype))
    idx = (params.noise | params.lowlight).nonzero().squeeze(1)
    if len(idx):
        gamma = params.crf[idx]
        irr = crf.to_irradiance(out[idx], gamma) * params.r[idx].to(out.dtype).view(-1, 1, 1, 1)
        noisy = params.noise[idx].nonzero().squeeze(1)
        if len(noisy):
            s, c = params.sigma_s[idx][noisy], params.sigma_c[idx][noisy]
            if config.noise_on_mosaic:
                raw = poisson_gaussian_noise(mosaic_rggb(irr[noisy]), s, c, generator)
                irr[noisy] = demosaic_bilinear(raw.clamp(0, 1))
            else:
                irr[noisy] = poisson_gaussian_noise(irr[noisy], s, c, generator)
        irr = irr.clamp(0, 1)
        rendered = crf.to_image(irr, gamma)
        if config.linear_lowlight:
            rendered = torch.where(params.lowlight[idx].view(-1, 1, 1, 1), irr, rendered)
        out[idx] = rendered
    return out.clamp(0, 1)


def degrade(images: torch.Tensor, config: DegradationConfig, generator: torch.Generator) -> Degraded:
    """Randomly degrade a batch of clean faces: the training-time synthesis of the paper.

    Args:
        images: ``(N, 3, H, W)`` float RGB in [0, 1], on ``generator.device``.
        config: ranges and probabilities.
        generator: the only source of randomness (same seed, same device -> same output).

    Returns:
        :class:`Degraded` ``(images, labels, params)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y, c, p = degrade(torch.rand(4, 3, 64, 64), DegradationConfig(), g)
        >>> y.shape, c.shape
        (torch.Size([4, 3, 64, 64]), torch.Size([4, 3]))
    """
    check_images(images)
    if images.device.type != generator.device.type:
        raise ValueError(f"generator: expected device {images.device} like the images, got {generator.device}")
    params = sample_params(images.shape[0], config, generator)
    y = apply_degradation(images, params, generator, config)
    return Degraded(y, params.labels, params)


class Degrader(nn.Module):
    """Module form of :func:`degrade` holding its config: ``Degrader(cfg)(images, generator)``."""

    def __init__(self, config: DegradationConfig | None = None) -> None:
        super().__init__()
        self.config = config or DegradationConfig()

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> Degraded:
        return degrade(images, self.config, generator)

    def extra_repr(self) -> str:
        return repr(self.config)
