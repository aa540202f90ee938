"""Face alignment shared by training and the camera: landmarks -> similarity transform -> model crop.

One function decides what the network sees, so training crops and camera crops match by
construction. Alignment uses four points in image coordinates (pixels, x right, y down):

    0: the eye on the image's left, 1: the eye on the image's right, 2: nose tip, 3: mouth centre.

YuNet's five points (eyes, nose, two mouth corners) and BlazeFace's six keypoints (eyes, nose tip,
mouth centre, ears) both reduce to these four with :func:`landmarks4_from_yunet5` and
:func:`landmarks4_from_blazeface6`.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "TEMPLATE4",
    "CROP_SIZE",
    "landmarks4_from_yunet5",
    "landmarks4_from_blazeface6",
    "similarity_transform",
    "crop_matrix",
    "invert_affine",
    "warp_to_crop",
    "crop_to_crop_matrix",
]

# ArcFace's 112x112 five-point template (eyes, nose, mouth corners) with the mouth corners merged to
# the mouth centre, then zoomed out by 0.75 about the centre so the crop holds the whole face (brow to
# chin), in units of the crop side. Coordinates are (x, y) in [0, 1].
_ARCFACE4 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [56.1396, 92.2848]], np.float64
) / 112.0
TEMPLATE4: np.ndarray = (0.5 + (_ARCFACE4 - 0.5) * 0.75).astype(np.float64)

#: Side of the model crop in pixels; every engine config uses it unless it says otherwise.
CROP_SIZE = 128


def landmarks4_from_yunet5(points: np.ndarray) -> np.ndarray:
    """YuNet / dataset order (left eye, right eye, nose, left mouth, right mouth) -> 4 alignment points.

    Args:
        points: ``(..., 5, 2)`` pixel coordinates.

    Returns:
        ``(..., 4, 2)`` float64: eyes, nose tip, mouth centre.
    """
    p = np.asarray(points, np.float64)
    if p.shape[-2:] != (5, 2):
        raise ValueError(f"expected (..., 5, 2) landmarks, got {p.shape}")
    return np.concatenate([p[..., :3, :], p[..., 3:5, :].mean(axis=-2, keepdims=True)], axis=-2)


def landmarks4_from_blazeface6(points: np.ndarray) -> np.ndarray:
    """BlazeFace keypoints (eye, eye, nose tip, mouth centre, ear, ear) -> 4 alignment points.

    MediaPipe lists the subject's right eye first, which is the eye on the image's left for a
    non-mirrored frame; the order is fixed by x so a mirrored camera gives the same crop geometry.

    Args:
        points: ``(..., 6, 2)`` pixel coordinates.

    Returns:
        ``(..., 4, 2)`` float64.
    """
    p = np.asarray(points, np.float64)
    if p.shape[-2:] != (6, 2):
        raise ValueError(f"expected (..., 6, 2) keypoints, got {p.shape}")
    eyes = p[..., :2, :]
    swap = eyes[..., 0, 0] > eyes[..., 1, 0]
    eyes = np.where(swap[..., None, None], eyes[..., ::-1, :], eyes)
    return np.concatenate([eyes, p[..., 2:4, :]], axis=-2)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama's closed form; reflection is excluded so a face is never mirrored by alignment.

    Args:
        src: ``(N, 2)`` points.
        dst: ``(N, 2)`` points, same N.

    Returns:
        ``(2, 3)`` float64 affine matrix ``M`` with ``dst ~= M @ [x, y, 1]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"point sets must both be (N, 2): {src.shape} vs {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("degenerate landmarks: all points coincide")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / var_s
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def crop_matrix(landmarks4: np.ndarray, size: int, template: np.ndarray = TEMPLATE4) -> np.ndarray:
    """Affine ``(2, 3)`` taking image pixels to the ``size``x``size`` model crop for one face.

    Args:
        landmarks4: ``(4, 2)`` pixel coordinates (see module docstring for the order).
        size: side of the square crop in pixels.
        template: ``(4, 2)`` template in units of the crop side.
    """
    return similarity_transform(landmarks4, np.asarray(template) * size)


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine (crop -> image for paste-back)."""
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def warp_to_crop(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Cut the aligned crop out of ``image`` (``(H, W, C)`` uint8 or float) with bilinear sampling.

    Pixels outside the image are filled by edge replication so faces at the frame edge do not get
    black borders that the network would try to 'restore'.
    """
    return cv2.warpAffine(
        image, np.asarray(m, np.float64), (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def crop_to_crop_matrix(
    template_a: np.ndarray, size_a: int, template_b: np.ndarray, size_b: int
) -> np.ndarray:
    """Fixed affine from one aligned crop layout to another (e.g. model crop -> recogniser chip).

    Both crops are similarity transforms of the same face, so the map between them is a constant
    that depends only on the two templates (``(K, 2)`` in units of their crop sides; same K).
    """
    return similarity_transform(np.asarray(template_a) * size_a, np.asarray(template_b) * size_b)
