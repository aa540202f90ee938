"""A small, seeded per-frame degrader for demos and tests (``nasfe-cam run --simulate bnl``).

It mirrors the paper's observation model (eq. 1), ``y = r * (k conv x) + n``, applied in linear light:

1. blur: ``x`` is convolved with one fixed linear motion kernel ``k``;
2. low light: the blurred irradiance is multiplied by a low-light factor ``r``;
3. noise: Poisson-Gaussian noise with variance ``L * sigma_s**2 + sigma_c**2`` (signal-dependent shot
   noise plus stationary read noise, the Gaussian approximation the paper takes from Foi et al.).

The defaults sit inside the paper's training ranges (r in [0.05, 0.5], sigma_s in [0.01, 0.16],
sigma_c in [0.01, 0.06]) at a level where a webcam frame still looks like a bad webcam frame. Two
simplifications against the paper: one fixed kernel instead of a sampled bank, and no Bayer mosaic /
camera-response-function round trip (a plain sRGB curve stands in for the CRF). The training-time
degradations live in ``training/degrade``; ``facecam`` does not import ``training``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["SIMULATIONS", "FrameDegrader", "srgb_to_linear", "linear_to_srgb", "motion_kernel"]

#: Accepted ``--simulate`` values: any combination of b(lur), n(oise), l(ow light), in this order.
SIMULATIONS: tuple[str, ...] = ("none", "b", "n", "l", "bn", "bl", "nl", "bnl")


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light in [0, 1] (float32, any shape)."""
    x = np.asarray(x, np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] -> sRGB-encoded values in [0, 1] (float32; input is clipped to [0, 1])."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


def motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised linear motion-blur kernel, ``(length, length)`` float32 summing to 1.

    Args:
        length: odd kernel side in pixels (the length of the motion streak).
        angle_deg: direction of motion, degrees counter-clockwise from the x axis.
    """
    if length < 1 or length % 2 == 0:
        raise ValueError(f"kernel length must be a positive odd number, got {length}")
    k = np.zeros((length, length), np.float32)
    c = length // 2
    k[c, :] = 1.0
    rot = cv2.getRotationMatrix2D((float(c), float(c)), angle_deg, 1.0)
    k = cv2.warpAffine(k, rot, (length, length), flags=cv2.INTER_LINEAR)
    return k / k.sum()


class FrameDegrader:
    """Degrades BGR uint8 frames with blur / low light / noise (see module docstring).

    Args:
        kinds: which degradations to apply, one of :data:`SIMULATIONS` (``"bnl"`` = all three).
        seed: seed of the noise generator; the same seed gives the same frame sequence.
        kernel_length: motion streak length in pixels (odd).
        kernel_angle_deg: motion direction in degrees.
        light: low-light factor ``r`` in (0, 1].
        sigma_s: signal-dependent noise level (linear light units).
        sigma_c: stationary noise level (linear light units).

    Example:
        >>> deg = FrameDegrader(kinds="bnl", seed=0)
        >>> dark = deg(np.full((8, 8, 3), 200, np.uint8))
        >>> int(dark.mean()) < 200
        True
    """

    def __init__(
        self,
        *,
        kinds: str = "bnl",
        seed: int = 0,
        kernel_length: int = 9,
        kernel_angle_deg: float = 30.0,
        light: float = 0.25,
        sigma_s: float = 0.03,
        sigma_c: float = 0.01,
    ) -> None:
        if kinds not in SIMULATIONS:
            raise ValueError(f"unknown simulation {kinds!r}: expected one of {', '.join(SIMULATIONS)}")
        if not 0.0 < light <= 1.0:
            raise ValueError(f"light factor must be in (0, 1], got {light}")
        self.kinds = "" if kinds == "none" else kinds
        self.light = float(light)
        self.sigma_s = float(sigma_s)
        self.sigma_c = float(sigma_c)
        self._kernel = motion_kernel(kernel_length, kernel_angle_deg)
        self._rng = np.random.default_rng(seed)

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Return a degraded copy of ``frame_bgr`` (``(H, W, 3)`` uint8 BGR); the input is not modified."""
        if not self.kinds:
            return frame_bgr.copy()
        lin = srgb_to_linear(frame_bgr.astype(np.float32) / 255.0)
        if "b" in self.kinds:
            lin = cv2.filter2D(lin, -1, self._kernel, borderType=cv2.BORDER_REFLECT)
        if "l" in self.kinds:
            lin = lin * self.light
        if "n" in self.kinds:
            std = np.sqrt(np.clip(lin, 0.0, None) * self.sigma_s**2 + self.sigma_c**2)
            lin = lin + self._rng.standard_normal(lin.shape, dtype=np.float32) * std
        return np.round(linear_to_srgb(lin) * 255.0).astype(np.uint8)
