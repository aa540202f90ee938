"""Where the runtime finds the shipped engine and keeps its per-user cache.

The trained engine ships as two files in ``assets/engine/`` (written by the training pipeline's
export stage): ``genotype.json`` (the architecture) and ``weights.safetensors`` (its weights).
Built artefacts that depend on the machine (ONNX graphs, TensorRT engines) go to the user's cache
folder, never into the install: ``$NASFE_CAM_CACHE`` if set, else ``$XDG_CACHE_HOME/nasfe-cam``
(default ``~/.cache/nasfe-cam``) on Linux, ``~/Library/Caches/nasfe-cam`` on macOS and
``%LOCALAPPDATA%\\nasfe-cam\\Cache`` on Windows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["ASSETS_DIR", "SHIPPED_GENOTYPE", "SHIPPED_WEIGHTS", "user_cache_dir"]

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "engine"
#: The shipped architecture (:class:`engine.genotype.Genotype` JSON).
SHIPPED_GENOTYPE = ASSETS_DIR / "genotype.json"
#: The shipped weights (:func:`engine.build.save_fused` safetensors).
SHIPPED_WEIGHTS = ASSETS_DIR / "weights.safetensors"


def user_cache_dir() -> Path:
    """The per-user cache folder of NASFE Cam (not created here); see the module docstring."""
    override = os.environ.get("NASFE_CAM_CACHE")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "nasfe-cam" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "nasfe-cam"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nasfe-cam"
