"""Synthetic degradations of the paper's image formation ``y = r * (k * x) + n`` (batched torch).

Typical use (training)::

    from training.degrade import DegradationConfig, degrade
    g = torch.Generator(device=x.device).manual_seed(seed)
    y, c, params = degrade(x, DegradationConfig(), g)   # x: (N, 3, H, W) RGB in [0, 1]
"""

from training.degrade.blur import Blur, blur
from training.degrade.camera import (
    GammaResponse,
    ResponseCurve,
    TabulatedResponse,
    demosaic_bilinear,
    mosaic_rggb,
)
from training.degrade.kernels import (
    anisotropic_gaussian_kernels,
    camera_shake_trajectories,
    delta_kernels,
    motion_kernels,
    pad_kernels,
)
from training.degrade.noise import noise_variance, poisson_gaussian_noise
from training.degrade.pipeline import (
    DegradationConfig,
    DegradationParams,
    Degraded,
    Degrader,
    apply_degradation,
    degrade,
    sample_params,
)

__all__ = [
    "Blur",
    "blur",
    "GammaResponse",
    "ResponseCurve",
    "TabulatedResponse",
    "demosaic_bilinear",
    "mosaic_rggb",
    "anisotropic_gaussian_kernels",
    "camera_shake_trajectories",
    "delta_kernels",
    "motion_kernels",
    "pad_kernels",
    "noise_variance",
    "poisson_gaussian_noise",
    "DegradationConfig",
    "DegradationParams",
    "Degraded",
    "Degrader",
    "apply_degradation",
    "degrade",
    "sample_params",
]
