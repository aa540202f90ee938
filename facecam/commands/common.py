"""Options and loading shared by ``nasfe-cam run`` and ``nasfe-cam enhance``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from engine.enhancer import Enhancer
from engine.errors import UserError
from facecam.controls import MODES, PipelineControls

__all__ = ["add_engine_arguments", "load_engine", "controls_from_args", "check_identity", "setup_logging"]


def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--strength``, ``--mode``, ``--identity``, ``--backend``, ``--weights``."""
    parser.add_argument(
        "--strength", type=_strength, default=1.0, metavar="S",
        help="0 (untouched, bit-exact) to 1 (full enhancement); default 1",
    )
    parser.add_argument(
        "--mode", choices=list(MODES), default="auto",
        help="what to fix: auto (the engine's classifier decides) or force deblur / denoise / lowlight",
    )
    parser.add_argument(
        "--identity", type=Path, metavar="FILE.npy",
        help="identity prior of the enrolled user, a (C, h, w) float array saved with numpy.save",
    )
    add_backend_arguments(parser)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--weights`` (the tray has no per-frame options)."""
    parser.add_argument(
        "--backend", default="auto", metavar="NAME",
        help="inference backend: auto (default), tensorrt, cuda, openvino, onnxruntime or torch",
    )
    parser.add_argument("--weights", type=Path, help="engine weights file (default: the shipped model)")


def load_engine(backend: str, weights: Path | None) -> Enhancer:
    """The engine from :func:`engine.runtime.load_enhancer`; a one-line UserError if it is unavailable."""
    try:
        from engine.runtime import load_enhancer
    except ImportError as exc:
        raise UserError(
            f"the enhancement engine is not available (engine.runtime.load_enhancer: {exc}); "
            "install a build that ships engine/runtime.py"
        ) from None
    if weights is not None and not weights.is_file():
        raise UserError(f"weights file not found: {weights}")
    try:
        return load_enhancer(backend=backend, weights=weights)
    except (ValueError, OSError, RuntimeError) as exc:
        raise UserError(f"cannot load the engine (backend {backend!r}): {exc}") from None


def controls_from_args(args: argparse.Namespace) -> PipelineControls:
    """Initial live settings from ``--strength``, ``--mode`` and ``--identity``."""
    identity = None
    if args.identity is not None:
        try:
            identity = np.load(args.identity, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            why = "not a .npy array file" if "pickle" in str(exc) else str(exc)  # never suggest unpickling
            raise UserError(f"cannot read identity prior {args.identity}: {why}") from None
        if not isinstance(identity, np.ndarray):  # an .npz archive
            raise UserError(f"cannot read identity prior {args.identity}: expected one .npy array, not an archive")
    try:
        return PipelineControls(strength=args.strength, mode=args.mode, identity=identity)
    except ValueError as exc:
        raise UserError(f"{args.identity}: {exc}") from None


def check_identity(enhancer: Enhancer, controls: PipelineControls, path: Path | None) -> None:
    """Refuse an identity prior the engine cannot use, once at start-up, instead of every frame
    passing through with a warning: one engine call on a blank crop with the prior.

    Raises:
        UserError: the engine rejects the prior (e.g. another shape); names the file.
    """
    identity = controls.identity
    if identity is None:
        return
    s = int(enhancer.crop_size)
    try:
        enhancer.enhance(np.zeros((1, s, s, 3), np.uint8), None, identity)
    except ValueError as exc:
        raise UserError(f"identity prior {path} does not fit the engine: {exc}") from None
    except Exception as exc:  # another engine failure: the running pipeline reports those per frame
        logging.getLogger("facecam").warning("checking the identity prior with the engine failed: %s", exc)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now, so a replaced or closed stderr is never kept."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass


def setup_logging(engine_level: int = logging.WARNING) -> None:
    """Filter messages and engine messages at ``engine_level`` go to stderr as ``nasfe-cam: ...``.

    Commands name the chosen backend in their own start line, so the engine's INFO line (which
    backend ``auto`` picked) is shown only where a command asks for it (``bench``).
    """
    for name, level in (("facecam", logging.INFO), ("engine", engine_level)):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter("nasfe-cam: %(message)s"))
            logger.addHandler(handler)
