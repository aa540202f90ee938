"""Picking clean, well-lit photos of the user for the identity prior ("Remember my face").

The identity prior is only as good as its references (paper §3.2: *clean* photos of the same
person), so each offered frame must show exactly one face, large enough, neither dark nor
blown out, not noisy and not blurred; accepted frames are spaced in time so the set covers a few
natural poses rather than one instant. Thresholds were measured on the bundled webcam clip (640x480)
against ``facecam.simulate`` degradations: clean face crops have a central mean luma of 130-145,
Laplacian variance 80-100 and a noise sigma of ~0.3; low light (r = 0.25) brings the luma to ~70,
blur the Laplacian variance to ~15, noise the sigma to ~1.6.

Frames are uint8 ``(H, W, 3)`` BGR; the collected crops are uint8 RGB, as :func:`engine.identity.enroll`
takes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.restoration import estimate_sigma

from engine.align import CROP_SIZE, crop_matrix, warp_to_crop
from facecam.detect import Face

__all__ = ["QualityThresholds", "Verdict", "assess", "EnrolmentCollector"]


@dataclass(frozen=True)
class QualityThresholds:
    """What counts as a clean reference photo.

    Attributes:
        min_face_px: smallest face box width in pixels.
        min_luma, max_luma: allowed mean luma (0-255) of the central face region of the crop.
        max_noise_sigma: largest estimated noise sigma (0-255 units) of the crop.
        min_sharpness: smallest variance of the crop's Laplacian (grey, 0-255 units).
    """

    min_face_px: float = 72.0
    min_luma: float = 85.0
    max_luma: float = 215.0
    max_noise_sigma: float = 1.0
    min_sharpness: float = 40.0


@dataclass(frozen=True)
class Verdict:
    """Whether a frame is good enough as a reference photo, and what to change if not (one short sentence)."""

    ok: bool
    reason: str


def assess(
    frame_bgr: np.ndarray, faces: Sequence[Face], thresholds: QualityThresholds = QualityThresholds(),
    crop_size: int = CROP_SIZE,
) -> tuple[Verdict, np.ndarray | None]:
    """Check one frame as a reference photo.

    Args:
        frame_bgr: ``(H, W, 3)`` uint8 BGR frame.
        faces: the faces found in it (pixels).
        thresholds: the quality bar.
        crop_size: side of the aligned crop.

    Returns:
        The verdict and, when accepted, the ``(S, S, 3)`` uint8 RGB aligned crop (else ``None``).
    """
    if not faces:
        return Verdict(False, "No face found: look at the camera."), None
    if len(faces) > 1:
        return Verdict(False, "More than one face in view: only you, please."), None
    face = faces[0]
    if face.box_px[2] < thresholds.min_face_px:
        return Verdict(False, "Face too small: come closer to the camera."), None
    crop_bgr = warp_to_crop(frame_bgr, crop_matrix(face.landmarks4_px, crop_size), crop_size)
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    q = crop_size // 4
    luma = float(grey[q:-q, q:-q].mean())
    if luma < thresholds.min_luma:
        return Verdict(False, "Too dark: turn on a light or face a window."), None
    if luma > thresholds.max_luma:
        return Verdict(False, "Too bright: move out of direct light."), None
    if float(estimate_sigma(grey)) > thresholds.max_noise_sigma:
        return Verdict(False, "Picture too grainy: add light."), None
    if float(cv2.Laplacian(grey, cv2.CV_64F).var()) < thresholds.min_sharpness:
        return Verdict(False, "Picture blurred: hold still."), None
    return Verdict(True, "Good."), np.ascontiguousarray(crop_bgr[..., ::-1])


class EnrolmentCollector:
    """Gathers ``target`` accepted crops at least ``min_interval_s`` apart.

    Args:
        target: number of reference photos to collect (>= 1).
        min_interval_s: seconds between two accepted frames, so the poses differ a little.
        thresholds: the quality bar.

    Example:
        >>> collector = EnrolmentCollector(target=5)
        >>> verdict = collector.offer(frame_bgr, faces, t_s=0.0)  # doctest: +SKIP
        >>> collector.done, len(collector.crops)  # doctest: +SKIP
        (False, 1)
    """

    def __init__(
        self, *, target: int = 5, min_interval_s: float = 0.5, thresholds: QualityThresholds = QualityThresholds()
    ) -> None:
        if target < 1:
            raise ValueError(f"target must be >= 1, got {target}")
        self.target = target
        self.min_interval_s = min_interval_s
        self.thresholds = thresholds
        #: Accepted ``(S, S, 3)`` uint8 RGB crops, in order.
        self.crops: list[np.ndarray] = []
        self._last_t: float | None = None

    @property
    def done(self) -> bool:
        return len(self.crops) >= self.target

    def offer(self, frame_bgr: np.ndarray, faces: Sequence[Face], t_s: float) -> Verdict:
        """Assess a frame (time ``t_s`` in seconds); keep its crop if it passes and the last one is old enough.

        The verdict says whether the frame was good enough, whether or not it was due to be kept.
        """
        if self.done:
            return Verdict(True, "All photos taken.")
        verdict, crop = assess(frame_bgr, faces, self.thresholds)
        if crop is None:
            return verdict
        if self._last_t is not None and t_s - self._last_t < self.min_interval_s:
            return Verdict(True, "Good: keep looking at the camera.")
        self.crops.append(crop)
        self._last_t = t_s
        return Verdict(True, f"Photo {len(self.crops)} of {self.target} taken.")

    def stacked(self) -> np.ndarray:
        """The accepted crops as one ``(n, S, S, 3)`` uint8 RGB array."""
        if not self.crops:
            raise ValueError("no reference photo accepted yet")
        return np.stack(self.crops)
