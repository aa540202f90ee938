"""Side-by-side comparison pictures like the paper's Fig. 6: one face per row, one method per column.

Columns are labelled in a header strip (degraded | baselines | NASFE rows | ground truth).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["comparison_grid"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _label(text: str, width: int, height: int) -> np.ndarray:
    """White ``(height, width, 3)`` uint8 strip with ``text`` centred, shrunk to fit the width."""
    strip = np.full((height, width, 3), 255, np.uint8)
    scale = 0.45
    while scale > 0.25 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width - 4:
        scale -= 0.02
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    org = (max((width - tw) // 2, 1), (height + th) // 2)
    cv2.putText(strip, text, org, _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def comparison_grid(
    rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], gap: int = 2, header: int = 22
) -> np.ndarray:
    """Tile images into a labelled grid.

    Args:
        rows: one sequence per face, each of ``len(labels)`` ``(S, S, 3)`` uint8 RGB images, all of
            one size.
        labels: column titles.
        gap: white pixels between cells.
        header: height of the title strip in pixels.

    Returns:
        ``(header + R*(S+gap), C*(S+gap), 3)`` uint8 RGB picture.
    """
    if not rows:
        raise ValueError("comparison_grid needs at least one row")
    size = rows[0][0].shape[0]
    for r in rows:
        if len(r) != len(labels):
            raise ValueError(f"row has {len(r)} images for {len(labels)} labels")
        for img in r:
            if img.shape != (size, size, 3) or img.dtype != np.uint8:
                raise ValueError(f"expected ({size}, {size}, 3) uint8 cells, got {img.shape} {img.dtype}")
    step = size + gap
    out = np.full((header + len(rows) * step, len(labels) * step, 3), 255, np.uint8)
    for j, text in enumerate(labels):
        out[:header, j * step:j * step + size] = _label(text, size, header)
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            y, x = header + i * step, j * step
            out[y:y + size, x:x + size] = img
    return out

