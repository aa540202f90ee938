"""Face recognisers ported to PyTorch from their public model files (no dlib / TFLite at run time).

- :class:`DlibResNet` (dlib's face-recognition ResNet, 150x150 chip, 128-D): the identity prior and
  the training losses (perceptual, identity) use its features.
- :class:`MobileFaceNet` (ArcFace-trained, 112x112, 192-D): scores face verification in evaluation,
  a network the restoration model is never trained against.

Both expose ``chip_size``, ``template`` (4-point alignment template, see :mod:`engine.align`),
``embedding_dim``, ``embed(chips) -> (B, D)`` unit-norm embeddings for ``(B, 3, S, S)`` RGB [0, 1]
chips, and ``crop_warp(crop_size)``, a differentiable warp from model crops to their chip.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.errors import UserError
from engine.recognition.dlib_resnet import (
    DLIB_CHIP_SIZE,
    DLIB_TEMPLATE4,
    DlibCropFeatures,
    DlibFeatures,
    DlibResNet,
    load_dlib_resnet,
)
from engine.recognition.mobilefacenet import ARCFACE_SIZE, ARCFACE_TEMPLATE4, MobileFaceNet, load_mobilefacenet
from engine.recognition.warp import CropWarp, warp_affine

__all__ = [
    "ARCFACE_SIZE",
    "ARCFACE_TEMPLATE4",
    "DLIB_CHIP_SIZE",
    "DLIB_TEMPLATE4",
    "RECOGNIZERS",
    "CropWarp",
    "DlibCropFeatures",
    "DlibFeatures",
    "DlibResNet",
    "MobileFaceNet",
    "load_dlib_resnet",
    "load_mobilefacenet",
    "load_recognizer",
    "warp_affine",
]

#: Recogniser name -> loader returning a frozen, eval-mode network.
RECOGNIZERS: dict[str, Callable[..., DlibResNet | MobileFaceNet]] = {
    "dlib": load_dlib_resnet,
    "mobilefacenet": load_mobilefacenet,
}


def load_recognizer(name: str, device: str | torch.device = "cpu") -> DlibResNet | MobileFaceNet:
    """Load a recogniser by name (``"dlib"`` or ``"mobilefacenet"``) with its shipped weights.

    Raises:
        UserError: unknown name or missing weights.
    """
    if name not in RECOGNIZERS:
        raise UserError(f"unknown recognizer {name!r}; choose from {', '.join(RECOGNIZERS)}")
    return RECOGNIZERS[name](device=device)
