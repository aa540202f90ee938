"""Muting native libraries' console chatter.

MediaPipe's LiteRT and OpenCV's DNN/V4L2 code print INFO lines and warnings straight to file
descriptor 2 with no switch to turn them off; the CLI's output should be ours alone. Python-level
errors still surface as exceptions.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["native_stderr_silenced"]


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at the null device for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
