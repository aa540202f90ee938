"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The network of dlib's ``dnn_face_recognition_ex.cpp`` (``anet_type``): a 150x150 RGB chip, a 7x7/2
convolution, 3x3/2 max pooling, then residual stages dlib calls level4..level0 (32, 64, 128, 256,
256 channels; 3, 4, 3, 3, 1 blocks; each stage after the first opens with a stride-2 block whose
skip path is a 2x2 average pool), global average pooling and a 128-D linear layer without bias.
dlib's conventions are kept exactly:

- the input layer subtracts per-channel means (R 122.782, G 117.001, B 104.298 on 0..255) and
  divides by 256;
- stride-2 convolutions and pools have no padding, stride-1 convolutions pad ``size // 2``;
- ``add_prev`` adds tensors of different shapes by zero-padding the smaller one at the end (extra
  channels, bottom rows, right columns), which happens at every down-sampling block;
- the batch-norm ``affine`` layers are folded into the preceding convolutions (exact at inference).

The weights are converted once from dlib's file by :mod:`engine.recognition.convert` and shipped as
``assets/recognition/dlib_resnet.safetensors`` (CC0).

Spatial sizes for a 150 chip: stem 72 -> pool 35 (level4) -> 17 (level3, 64 ch) -> 8 (level2, 128
ch) -> 4 (level1) -> 2 (level0).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.align import CROP_SIZE, TEMPLATE4
from engine.recognition.warp import CropWarp
from engine.recognition.weights import load_frozen

__all__ = [
    "DLIB_CHIP_SIZE",
    "DLIB_TEMPLATE4",
    "DLIB_MEAN_RGB",
    "DLIB_WEIGHTS",
    "DlibFeatures",
    "DlibResNet",
    "DlibCropFeatures",
    "load_dlib_resnet",
]

#: Side of dlib's aligned face chip.
DLIB_CHIP_SIZE = 150
#: Per-channel means (0..255, RGB) subtracted by dlib's ``input_rgb_image_sized``; the result is /256.
DLIB_MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
#: Converted weights shipped with the project.
DLIB_WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "recognition" / "dlib_resnet.safetensors"


def _dlib_template4(padding: float = 0.25) -> np.ndarray:
    """The 4-point layout (see :mod:`engine.align`) of dlib's ``get_face_chip_details(.., 150, 0.25)``.

    dlib places faces with its 68-point mean face shape (dlib/image_transforms/interpolation.h; its
    5-point template of eye corners and nose base is a subset of it). Our four points are read off
    the same mean face: eye centres = mean of each eye's six contour points (36-41, 42-47), nose tip
    = point 30, mouth centre = midpoint of the mouth corners 48 and 54 (YuNet gives corners, we
    average them). dlib's padding maps ``p -> (p + padding) / (1 + 2 * padding)``.
    """
    left_eye = np.mean([[0.121737, 0.216423], [0.187122, 0.178758], [0.265825, 0.179852],
                        [0.334606, 0.231733], [0.260918, 0.245099], [0.182743, 0.244077]], axis=0)
    right_eye = np.mean([[0.645647, 0.231733], [0.714428, 0.179852], [0.793132, 0.178758],
                         [0.858516, 0.216423], [0.79751, 0.244077], [0.719335, 0.245099]], axis=0)
    nose_tip = [0.490127, 0.515625]
    mouth = np.mean([[0.254149, 0.780233], [0.726104, 0.780233]], axis=0)
    points = np.array([left_eye, right_eye, nose_tip, mouth], np.float64)
    return (points + padding) / (1.0 + 2.0 * padding)


#: Alignment template of the dlib chip, ``(4, 2)`` in units of the chip side (order of engine.align).
DLIB_TEMPLATE4: np.ndarray = _dlib_template4()


class DlibFeatures(NamedTuple):
    """Outputs of :class:`DlibResNet` for a batch of chips.

    Attributes:
        level3: ``(B, 64, 17, 17)`` feature map after dlib's level3 (1/8.8 of the chip; stands in
            for VGGFace pool3 in the perceptual loss).
        level2: ``(B, 128, 8, 8)`` feature map after level2 (the identity prior's source).
        embedding: ``(B, 128)`` L2-normalised face descriptor.
    """

    level3: torch.Tensor
    level2: torch.Tensor
    embedding: torch.Tensor


def _add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum of two (B, C, H, W) tensors, the smaller zero-padded at the end."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class DlibResBlock(nn.Module):
    """dlib's ``ares`` / ``ares_down``: relu(conv-relu-conv(x) + skip(x)), skip = 2x2 avg pool when down."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        stride, pad = (2, 0) if downsample else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=pad)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        skip = F.avg_pool2d(x, 2) if self.downsample else x
        return F.relu(_add_zero_padded(y, skip))


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet; input chips aligned with :data:`DLIB_TEMPLATE4`.

    ``forward`` takes ``(B, 3, H, W)`` float RGB in [0, 1] (150x150 for the trained behaviour) and
    returns :class:`DlibFeatures`; everything is differentiable w.r.t. the input.
    """

    #: (channels, blocks) of dlib's level4, level3, level2, level1, level0.
    STAGES: tuple[tuple[int, int], ...] = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))
    chip_size = DLIB_CHIP_SIZE
    template = DLIB_TEMPLATE4
    embedding_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, stride=2)
        levels = []
        channels = 32
        for i, (width, blocks) in enumerate(self.STAGES):
            levels.append(nn.Sequential(*(
                DlibResBlock(channels if j == 0 else width, width, downsample=(i > 0 and j == 0))
                for j in range(blocks)
            )))
            channels = width
        self.level4, self.level3, self.level2, self.level1, self.level0 = levels
        self.fc = nn.Linear(256, self.embedding_dim, bias=False)
        self.register_buffer("mean", torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1) / 255.0, persistent=False)

    def forward(self, chips: torch.Tensor) -> DlibFeatures:
        if chips.ndim != 4 or chips.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) RGB chips, got shape {tuple(chips.shape)}")
        x = (chips - self.mean) * (255.0 / 256.0)
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        level3 = self.level3(self.level4(x))
        level2 = self.level2(level3)
        pooled = self.level0(self.level1(level2)).mean(dim=(2, 3))
        return DlibFeatures(level3, level2, F.normalize(self.fc(pooled), dim=1))

    def embed(self, chips: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 150, 150)`` RGB [0, 1] chips -> ``(B, 128)`` unit-norm embeddings."""
        return self(chips).embedding

    def crop_warp(self, crop_size: int = CROP_SIZE) -> CropWarp:
        """Differentiable warp from ``engine.align`` model crops of ``crop_size`` to this net's chip."""
        return CropWarp(TEMPLATE4, crop_size, DLIB_TEMPLATE4, DLIB_CHIP_SIZE)


class DlibCropFeatures(nn.Module):
    """A frozen :class:`DlibResNet` applied to ``engine.align`` model crops through the fixed chip warp.

    Args:
        recognizer: frozen network; ``None`` loads the shipped weights (CPU).
        crop_size: side ``S`` of the model crops.

    ``forward``: ``(B, 3, S, S)`` float RGB [0, 1] -> :class:`DlibFeatures`, differentiable w.r.t. the
    crops. The network stays in eval mode and never requires gradients, whatever mode the module
    holding this one is put in.
    """

    def __init__(self, recognizer: DlibResNet | None = None, crop_size: int = CROP_SIZE) -> None:
        super().__init__()
        self.recognizer = (load_dlib_resnet() if recognizer is None else recognizer).requires_grad_(False).eval()
        self.warp = self.recognizer.crop_warp(crop_size)

    def train(self, mode: bool = True) -> DlibCropFeatures:
        super().train(mode)
        self.recognizer.eval()
        return self

    def forward(self, crops: torch.Tensor) -> DlibFeatures:
        if crops.ndim != 4 or crops.shape[1] != 3:
            raise ValueError(f"expected (B, 3, S, S) RGB crops, got shape {tuple(crops.shape)}")
        return self.recognizer(self.warp(crops))


def load_dlib_resnet(path: str | Path = DLIB_WEIGHTS, device: str | torch.device = "cpu") -> DlibResNet:
    """Build :class:`DlibResNet` with converted weights, frozen (no grads on parameters), eval mode.

    Raises:
        UserError: the weights file is missing or does not fit the architecture.
    """
    return load_frozen(DlibResNet(), path, "dlib ResNet", device)
