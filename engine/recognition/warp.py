"""Differentiable affine warps between aligned crop layouts (torch twin of ``cv2.warpAffine``).

A recogniser wants its own chip (dlib 150x150, ArcFace 112x112) while the restoration network works
on the model crop of :mod:`engine.align`. Both are similarity transforms of the same face, so the map
from one to the other is a constant (:func:`engine.align.crop_to_crop_matrix`); applying it with
``affine_grid``/``grid_sample`` keeps the path differentiable w.r.t. the image, which the perceptual
and identity losses need.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.align import crop_to_crop_matrix, invert_affine

__all__ = ["affine_theta", "warp_affine", "CropWarp"]


def affine_theta(m: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> torch.Tensor:
    """Turn a pixel affine into the ``theta`` that ``F.affine_grid`` expects.

    Args:
        m: ``(2, 3)`` affine taking source pixels to destination pixels (OpenCV convention: pixel
            centres at integer coordinates, x right, y down).
        src_size: source ``(height, width)``.
        dst_size: destination ``(height, width)``.

    Returns:
        ``(2, 3)`` float32 theta mapping destination normalised coordinates to source normalised
        coordinates (``align_corners=False``).
    """
    inv = invert_affine(np.asarray(m, np.float64))
    (hs, ws), (hd, wd) = src_size, dst_size
    d_dst = np.diag([wd / 2.0, hd / 2.0])
    c_dst = np.array([(wd - 1) / 2.0, (hd - 1) / 2.0])
    d_src_inv = np.diag([2.0 / ws, 2.0 / hs])
    c_src = np.array([(ws - 1) / 2.0, (hs - 1) / 2.0])
    a, t = inv[:, :2], inv[:, 2]
    theta = np.empty((2, 3))
    theta[:, :2] = d_src_inv @ a @ d_dst
    theta[:, 2] = d_src_inv @ (a @ c_dst + t - c_src)
    return torch.from_numpy(theta).float()


def warp_affine(x: torch.Tensor, m: np.ndarray, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear warp of a batch with one pixel affine, border pixels replicated.

    Args:
        x: ``(B, C, H, W)`` float tensor (any range).
        m: ``(2, 3)`` source-pixel -> destination-pixel affine, as for ``cv2.warpAffine``.
        size: output side, or ``(height, width)``.

    Returns:
        ``(B, C, h, w)`` tensor, same dtype/device as ``x``; differentiable w.r.t. ``x``.

    Example:
        >>> warp_affine(torch.rand(2, 3, 128, 128), np.array([[1., 0, -10], [0, 1, -10]]), 100).shape
        torch.Size([2, 3, 100, 100])
    """
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(x.shape)}")
    h, w = (size, size) if isinstance(size, int) else size
    theta = affine_theta(m, (x.shape[2], x.shape[3]), (h, w)).to(x)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), [x.shape[0], x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class CropWarp(nn.Module):
    """Fixed warp from one aligned layout (``template_in`` at ``size_in``) to another.

    Example: ``CropWarp(engine.align.TEMPLATE4, 128, DLIB_TEMPLATE4, 150)`` turns model crops into
    dlib chips. Input ``(B, C, size_in, size_in)``, output ``(B, C, size_out, size_out)``.
    """

    def __init__(self, template_in: np.ndarray, size_in: int, template_out: np.ndarray, size_out: int) -> None:
        super().__init__()
        self.size_in, self.size_out = size_in, size_out
        m = crop_to_crop_matrix(template_in, size_in, template_out, size_out)
        self.register_buffer("theta", affine_theta(m, (size_in, size_in), (size_out, size_out)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2:] != (self.size_in, self.size_in):
            raise ValueError(
                f"expected (B, C, {self.size_in}, {self.size_in}) crops, got shape {tuple(x.shape)}"
            )
        n, c = x.shape[:2]
        theta = self.theta.to(x.dtype).expand(n, 2, 3)
        grid = F.affine_grid(theta, [n, c, self.size_out, self.size_out], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
