"""Writing outputs safely: to a temporary file beside the target, renamed into place when complete.

A crash or Ctrl-C never leaves a half-written PNG or video under the name the user asked for, and
an existing file is replaced in one step.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

__all__ = ["partial_path", "commit_partial", "atomic_path", "write_image_atomic", "same_file"]


def partial_path(target: str | Path) -> Path:
    """A temporary name beside ``target`` with the same suffix (writers pick the format from it).

    Creates the target's folder if needed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.with_name(f".{target.stem}.{os.getpid()}.partial{target.suffix}")


def commit_partial(tmp: Path, target: str | Path) -> None:
    """Move a finished temporary file onto ``target`` in one step."""
    if not tmp.is_file():
        raise OSError(f"nothing was written to {tmp}")
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on normal exit it replaces ``target``, else it is deleted."""
    tmp = partial_path(target)
    try:
        yield tmp
        commit_partial(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_image_atomic(path: str | Path, image_bgr: np.ndarray) -> None:
    """Write ``image_bgr`` (``(H, W, 3)`` uint8 BGR) to ``path`` (format from its suffix) atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image_bgr):
            raise OSError(f"OpenCV could not write an image with suffix {Path(path).suffix!r}: {path}")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file or folder (after resolving links and ``..``)."""
    return Path(a).resolve() == Path(b).resolve()
