"""Putting restored faces back: scene exposure that follows the face, then a seamless paste.

Two problems, in frame order:

* :class:`ExposureFollower` -- the network brightens a face in a dark room; pasting that face onto
  the dark frame would give a lit face on a black background. It estimates the per-channel gain the
  engine applied to the face (linear light, the inverse of the paper's low-light factor ``r``),
  smooths it over time and applies it to the whole frame through a lookup table with a highlight
  roll-off, so the room comes out lit and the face sits in it.
* :class:`FaceCompositor` -- the restored crop is warped back with the inverse alignment transform
  and blended through a feathered elliptical mask; before that, the crop's low frequencies are pulled
  towards the frame's along the seam, so colour and brightness match where the two meet while the
  face's centre keeps the engine's result.

Images here are uint8 ``(H, W, 3)`` in one channel order throughout (the pipeline uses BGR); crops
are ``(S, S, 3)`` uint8 in the same order. Masks, lookup tables and the crop-space work buffers are
computed once per crop size.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from engine.align import warp_to_crop
from facecam.simulate import linear_to_srgb, srgb_to_linear

__all__ = ["face_mask", "seam_weight", "FaceCompositor", "ExposureFollower", "exposure_lut"]

# The face ellipse in units of the crop side, fitted around engine.align.TEMPLATE4 (eyes at y~0.47,
# mouth at y~0.74, eye distance ~0.24): centre and semi-axes, brow to chin and cheek to cheek.
_ELLIPSE_CENTRE = (0.5, 0.54)
_ELLIPSE_AXES = (0.40, 0.44)
# uint8 sRGB code -> linear light, for measuring crops without per-pixel powers.
_LINEAR_OF_U8 = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)


def _ellipse_radius(size: int) -> np.ndarray:
    """Normalised elliptical radius (1 on the face ellipse) on the ``size``x``size`` crop grid."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    x = (c[None, :] - _ELLIPSE_CENTRE[0]) / _ELLIPSE_AXES[0]
    y = (c[:, None] - _ELLIPSE_CENTRE[1]) / _ELLIPSE_AXES[1]
    return np.sqrt(x * x + y * y)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def face_mask(size: int, *, feather: float = 0.25) -> np.ndarray:
    """Feathered face mask in crop space: ``(size, size)`` float32, 1 inside the face, 0 outside.

    Args:
        size: crop side in pixels.
        feather: width of the soft edge as a fraction of the ellipse radius (0 < feather < 1).
    """
    if not 0.0 < feather < 1.0:
        raise ValueError(f"feather must be in (0, 1), got {feather}")
    return _smoothstep((1.0 - _ellipse_radius(size)) / feather).astype(np.float32)


def seam_weight(size: int, *, feather: float = 0.25) -> np.ndarray:
    """Where colour matching acts: ``(size, size)`` float32, 0 in the face centre, 1 from the seam out.

    It rises over twice the mask's feather width so the correction is complete where the mask fades.
    """
    return _smoothstep((_ellipse_radius(size) - (1.0 - 2.0 * feather)) / feather).astype(np.float32)


class FaceCompositor:
    """Pastes restored face crops into a frame, matching colour at the seam.

    Args:
        crop_size: side ``S`` of the aligned crops (the enhancer's ``crop_size``).
        feather: soft-edge width, fraction of the face ellipse radius.
        seam_sigma: scale (fraction of ``S``) of the low frequencies matched along the seam.
    """

    def __init__(self, *, crop_size: int, feather: float = 0.25, seam_sigma: float = 1 / 16) -> None:
        self.crop_size = crop_size
        self.mask = face_mask(crop_size, feather=feather)
        self._seam = seam_weight(crop_size, feather=feather)[..., None]
        self._sigma = seam_sigma * crop_size
        self._mask3 = np.repeat(self.mask[..., None], 3, axis=2)

    def match_seam(self, crop: np.ndarray, background: np.ndarray) -> np.ndarray:
        """Pull ``crop``'s low frequencies towards ``background``'s near the seam.

        Args:
            crop: ``(S, S, 3)`` uint8 restored face.
            background: ``(S, S, 3)`` uint8 the frame under the same crop (same channel order).

        Returns:
            ``(S, S, 3)`` float32 in [0, 255].
        """
        diff = background.astype(np.float32) - crop.astype(np.float32)
        low = cv2.GaussianBlur(diff, (0, 0), self._sigma, borderType=cv2.BORDER_REPLICATE)
        return np.clip(crop.astype(np.float32) + self._seam * low, 0.0, 255.0)

    def paste(self, frame: np.ndarray, crop: np.ndarray, matrix: np.ndarray) -> None:
        """Blend ``crop`` into ``frame`` in place.

        Args:
            frame: ``(H, W, 3)`` uint8, modified in place.
            crop: ``(S, S, 3)`` uint8 restored face, same channel order as ``frame``.
            matrix: ``(2, 3)`` image -> crop affine used to cut the crop (``engine.align.crop_matrix``).
        """
        s = self.crop_size
        if crop.shape != (s, s, 3):
            raise ValueError(f"unexpected crop shape: {crop.shape} != {(s, s, 3)}")
        face = self.match_seam(crop, warp_to_crop(frame, matrix, s))
        # The crop's footprint in the frame: its corners mapped back with the inverse transform.
        inv = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
        corners = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]], np.float64) @ inv.T
        h, w = frame.shape[:2]
        x0, y0 = (max(0, math.floor(v)) for v in corners.min(0))
        x1, y1 = min(w, math.ceil(corners[:, 0].max())), min(h, math.ceil(corners[:, 1].max()))
        if x1 <= x0 or y1 <= y0:
            return
        # frame ROI pixel (u, v) -> crop pixel: matrix applied to (u + x0, v + y0).
        roi_to_crop = np.asarray(matrix, np.float64).copy()
        roi_to_crop[:, 2] += roi_to_crop[:, :2] @ np.array([x0, y0], np.float64)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        size = (x1 - x0, y1 - y0)
        face_roi = cv2.warpAffine(face, roi_to_crop, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(self._mask3, roi_to_crop, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
        roi = frame[y0:y1, x0:x1]
        base = roi.astype(np.float32)
        roi[...] = np.clip(base + alpha * (face_roi - base) + 0.5, 0, 255).astype(np.uint8)


def exposure_lut(gain: np.ndarray, *, knee: float = 0.5) -> np.ndarray:
    """Per-channel lookup table applying a linear-light gain with a soft highlight roll-off.

    Below ``knee`` (linear light) the gain is exact; above it a channel whose gain exceeds 1 is
    compressed with Reinhard's extended curve so that its brightest input lands exactly on white
    instead of clipping: a window behind the user keeps its shape. Gains <= 1 need no roll-off, and
    a gain of 1 gives the identity table.

    Args:
        gain: ``(3,)`` positive gains in the frame's channel order.
        knee: linear-light level where the roll-off starts, in (0, 1).

    Returns:
        ``(1, 256, 3)`` uint8 table for ``cv2.LUT``.
    """
    g = np.asarray(gain, np.float64)
    lin = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0).astype(np.float64)[:, None] * g
    t = np.maximum(lin - knee, 0.0) / (1.0 - knee)
    t_max = np.maximum((g - knee) / (1.0 - knee), 1.0)  # brightest input, in roll-off units
    rolled = knee + (1.0 - knee) * t * (1.0 + t / t_max**2) / (1.0 + t)
    out = np.where((lin > knee) & (g > 1.0), rolled, lin)
    return np.round(linear_to_srgb(out) * 255.0).astype(np.uint8)[None]


class ExposureFollower:
    """Estimates the gain the engine gave the faces and applies its smoothed value to the whole frame.

    When the faces leave, :meth:`release` fades the gain back to 1 (slower than it follows, so a
    glance away does not flash the room dark) and then drops it, after which frames pass unchanged.

    Args:
        time_constant_s: smoothing time constant (seconds) of the gain, in the log domain; 0 = none.
        release_time_constant_s: time constant (seconds) of the fade back to 1 without faces.
        max_gain: gains are clamped to ``[1 / max_gain, max_gain]``.
        max_tint: no channel's gain strays further than this factor from the channels' geometric
            mean (larger casts are scaled down, the mean kept), so the scene follows the face's
            light but a colour cast, or one odd skin tone, cannot recolour the whole room.
        knee: highlight roll-off start (see :func:`exposure_lut`).
    """

    def __init__(
        self,
        *,
        time_constant_s: float = 0.5,
        release_time_constant_s: float = 2.0,
        max_gain: float = 8.0,
        max_tint: float = 1.25,
        knee: float = 0.5,
    ) -> None:
        self.time_constant_s = time_constant_s
        self.release_time_constant_s = release_time_constant_s
        self.max_gain = max_gain
        self.max_tint = max_tint
        self.knee = knee
        self._log_gain: np.ndarray | None = None
        self._t = 0.0
        self._lut_gain: np.ndarray | None = None
        self._lut: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the smoothed gain (e.g. between unrelated images)."""
        self._log_gain = None

    @property
    def active(self) -> bool:
        """Whether a gain is held (False before the first face and after a completed release)."""
        return self._log_gain is not None

    @property
    def gain(self) -> np.ndarray:
        """Current smoothed ``(3,)`` linear-light gain (ones before the first face)."""
        return np.ones(3) if self._log_gain is None else np.exp(self._log_gain)

    def measure(self, before: np.ndarray, after: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Per-channel linear-light gain that maps ``before`` crops to ``after`` crops on average.

        Means are used (not a fitted curve) because denoising keeps a region's mean but moves each
        pixel, which would bias a per-pixel fit.

        Args:
            before: ``(N, S, S, 3)`` uint8 crops given to the engine.
            after: ``(N, S, S, 3)`` uint8 crops it returned (same channel order).
            weight: ``(S, S)`` float32 where to measure (the face mask).

        Returns:
            ``(3,)`` float64 gains within ``max_tint`` of their geometric mean, clamped to
            ``[1 / max_gain, max_gain]``.
        """
        if before.shape != after.shape:
            raise ValueError(f"crop shapes differ: {before.shape} != {after.shape}")
        w = weight[None, ..., None]
        num = (_LINEAR_OF_U8[after] * w).sum(axis=(0, 1, 2))
        den = (_LINEAR_OF_U8[before] * w).sum(axis=(0, 1, 2))
        gain = (num + 1e-6) / (den + 1e-6)
        # shrink the channels' log deviations from their mean: the tint fades, the brightening stays
        log_gain = np.log(gain)
        tint = log_gain - log_gain.mean()
        limit = math.log(self.max_tint)
        if np.abs(tint).max() > limit:
            gain = np.exp(log_gain.mean() + tint * (limit / np.abs(tint).max()))
        return np.clip(gain, 1.0 / self.max_gain, self.max_gain).astype(np.float64)

    def update(self, gain: np.ndarray, t_s: float) -> np.ndarray:
        """Fold a new measurement taken at time ``t_s`` (seconds) into the smoothed gain; returns it."""
        log_gain = np.log(np.asarray(gain, np.float64))
        if self._log_gain is None:
            self._log_gain = log_gain
        else:
            step = self._step(t_s, self.time_constant_s)
            self._log_gain = self._log_gain + step * (log_gain - self._log_gain)
        self._t = t_s
        return self.gain

    def release(self, t_s: float) -> np.ndarray:
        """No face at time ``t_s``: fade the held gain towards 1, dropping it once within 0.5 %."""
        if self._log_gain is not None:
            self._log_gain = self._log_gain * (1.0 - self._step(t_s, self.release_time_constant_s))
            self._t = t_s
            if np.abs(self._log_gain).max() < 0.005:
                self._log_gain = None
        return self.gain

    def _step(self, t_s: float, time_constant_s: float) -> float:
        if time_constant_s <= 0:
            return 1.0
        return 1.0 - math.exp(-max(t_s - self._t, 0.0) / time_constant_s)

    def apply(self, frame: np.ndarray, gain: np.ndarray) -> np.ndarray:
        """A new frame: ``frame`` (``(H, W, 3)`` uint8) with the ``(3,)`` linear-light ``gain`` applied."""
        gain = np.asarray(gain, np.float64)
        if self._lut is None or not np.allclose(gain, self._lut_gain, rtol=1e-3, atol=0):
            self._lut, self._lut_gain = exposure_lut(gain, knee=self.knee), gain
        return cv2.LUT(frame, self._lut)
