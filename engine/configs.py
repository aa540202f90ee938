"""Typed network configurations in one registry: ``smoke``, ``rt``, ``rt_wide`` and ``paper``.

One code path builds every size; a config only sets widths, depths and the search space. Layout of
the network a config describes (see :mod:`engine.blocks` for the parts)::

    x (B,3,S,S) --pixel-unshuffle(stem)--> three task encoders E_B, E_N, E_L (FiLM on the prior)
      --concat--> entry conv (stride 2 per fusion_down) + FiLM + identity injection = fusion level 0
      --> fusion network: `layers` cells of `blocks` blocks, each cell at one of
          len(fusion_channels) resolutions (level k = level 0 / 2**k, fusion_channels[k] channels)
      --> decoder (pixel-shuffle back to the encoder resolution, skip from the encoders)
      --> image head: restored = base(x) * gain + residual (base: x blended with box-filtered copies)

Resolutions: encoders work at ``S / stem``, fusion level ``k`` at ``S / (stem * 2**(fusion_down + k))``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from engine.errors import UserError
from engine.ops import has_op, list_ops

__all__ = ["NASFEConfig", "register_config", "get_config", "list_configs", "ALL_OPS", "RT_OPS"]

#: The paper's ten operators plus ``zero`` (sec. 3.1).
ALL_OPS: tuple[str, ...] = (
    "zero",
    "identity",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "self_attention",
    "res2block",
    "res_op",
    "deveil",
    "fft_op",
)

#: The real-time search space. Dropped: the 5x5 convolutions (at 1/4 and 1/8 resolution a 3x3
#: already covers 12-24 input pixels; 5x5 depthwise kernels are memory-bound on CPUs) and
#: self-attention (softmax over thousands of tokens and two batched matmuls per call are slow on
#: CPUs; global context comes from ``fft_op``, whose transform spans the whole face, and from the
#: global gain of the image head). Every operator kept is one or two fused convolutions, a Wiener
#: step, or free.
RT_OPS: tuple[str, ...] = (
    "zero",
    "identity",
    "dil_conv_3x3",
    "sep_conv_3x3",
    "res2block",
    "res_op",
    "deveil",
    "fft_op",
)


@dataclass(frozen=True)
class NASFEConfig:
    """Widths, depths and search space of one NASFE network (all sizes in pixels/channels)."""

    name: str
    description: str
    #: Side of the square aligned crop (:data:`engine.align.CROP_SIZE`).
    crop_size: int = 128
    #: Channels of the identity prior ``(B, id_channels, h, w)`` (dlib ResNet level-2 features).
    id_channels: int = 128
    #: Spatial side of the identity prior used for export examples (any size works in torch).
    id_size: int = 8
    #: Pixel-unshuffle factor of the stem (1 = encoders at full resolution).
    stem: int = 2
    #: Channels and residual blocks of each task encoder.
    enc_channels: int = 16
    enc_blocks: int = 1
    #: Stride-2 steps between the encoders and fusion level 0.
    fusion_down: int = 1
    #: Channels per fusion level (level k at half the resolution of level k-1).
    fusion_channels: tuple[int, ...] = (32, 64)
    #: Fusion layers (cells on the searched path) and blocks per cell.
    layers: int = 4
    blocks: int = 3
    #: Operator search space, in the column order of the architecture weights alpha.
    ops: tuple[str, ...] = RT_OPS
    #: Decoder channels and residual blocks (at the encoder resolution).
    dec_channels: int = 16
    dec_blocks: int = 1
    #: Box-filter sizes whose copies of the input the image head may blend into ``x`` before the
    #: gain (:class:`engine.blocks.ImageHead`); ``()`` = the plain ``x * gain + residual`` head.
    head_smooth: tuple[int, ...] = (2, 4, 8)
    #: Classifier widths, one stride-2 conv stage each (after a 2x pixel-unshuffle).
    cls_channels: tuple[int, ...] = (16, 32, 64)

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"config {self.name!r}: {what}")

        need(self.stem >= 1 and self.fusion_down >= 0, "stem must be >= 1 and fusion_down >= 0")
        need(len(self.fusion_channels) >= 1, "fusion_channels needs at least one level")
        need(self.layers >= 1 and self.blocks >= 1, "layers and blocks must be >= 1")
        need(self.crop_size % self.size_multiple == 0, f"crop_size must be divisible by {self.size_multiple}")
        unknown = [op for op in self.ops if not has_op(op)]
        need(not unknown, f"unknown operators {unknown}; registered: {list_ops()}")
        need(len(set(self.ops)) == len(self.ops), "duplicate operators")
        need(all(k >= 2 for k in self.head_smooth), "head_smooth sizes must be >= 2")
        need(any(op != "zero" for op in self.ops), "the search space needs an operator other than zero")
        if "res2block" in self.ops:
            need(all(c % 4 == 0 for c in self.fusion_channels), "res2block needs fusion channels divisible by 4")

    @property
    def levels(self) -> int:
        """Number of fusion resolutions searched at the network level."""
        return len(self.fusion_channels)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (every level tiles exactly)."""
        return math.lcm(self.stem * 2 ** (self.fusion_down + len(self.fusion_channels) - 1), *self.head_smooth)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)


_CONFIGS: dict[str, NASFEConfig] = {}


def register_config(config: NASFEConfig) -> NASFEConfig:
    """Add ``config`` to the registry; a second config with the same name is an error."""
    if config.name in _CONFIGS:
        raise ValueError(f"config {config.name!r} is already registered")
    _CONFIGS[config.name] = config
    return config


def list_configs() -> tuple[str, ...]:
    """Registered config names."""
    return tuple(_CONFIGS)


def get_config(config: str | NASFEConfig) -> NASFEConfig:
    """The registered config called ``config`` (a config object is returned as is).

    Raises:
        UserError: unknown name (the message lists the known ones).
    """
    if isinstance(config, NASFEConfig):
        return config
    if config not in _CONFIGS:
        raise UserError(f"unknown network config {config!r}; known: {', '.join(_CONFIGS)}")
    return _CONFIGS[config]


register_config(
    NASFEConfig(
        name="smoke",
        description="Tiny network for tests: every operator, two levels, 32x32 crops; runs in milliseconds.",
        crop_size=32,
        id_size=5,
        stem=2,
        enc_channels=8,
        enc_blocks=1,
        fusion_down=1,
        fusion_channels=(8, 16),
        layers=3,
        blocks=2,
        ops=ALL_OPS,
        dec_channels=8,
        dec_blocks=1,
        cls_channels=(8, 16),
    )
)

_RT = register_config(
    NASFEConfig(
        name="rt",
        description=(
            "Real time on a CPU: 2x pixel-unshuffle stem, encoders and decoder at 1/2, fusion at 1/4 "
            "and 1/8, reduced operator set; <= 1.5 GFLOPs per 128x128 crop for any derived network."
        ),
        crop_size=128,
        stem=2,
        enc_channels=16,
        enc_blocks=1,
        fusion_down=1,
        fusion_channels=(32, 64),
        layers=4,
        blocks=3,
        ops=RT_OPS,
        dec_channels=16,
        dec_blocks=1,
        cls_channels=(16, 32, 64),
    )
)

register_config(
    dataclasses.replace(
        _RT,
        name="rt_wide",
        description=(
            "rt at twice the encoder/decoder width and 1.5x the fusion width (rt's 16-channel decoder "
            "limits detail): rt's genotype costs 1.36 GFLOPs per 128x128 crop here (rt: 0.48), 11 ms "
            "per face on OpenVINO with one CPU thread (rt: 6.5); <= 3.1 GFLOPs for any derived network."
        ),
        enc_channels=32,
        fusion_channels=(48, 96),
        dec_channels=32,
    )
)

register_config(
    NASFEConfig(
        name="paper",
        description=(
            "The paper's size: B = 12 blocks per cell and all ten operators; encoders and decoder at "
            "full resolution carry most weights, so every derivable network has 6.4 M +- 10 % "
            "learnable parameters (Table 6: 6.40 M)."
        ),
        crop_size=128,
        stem=1,
        enc_channels=96,
        enc_blocks=8,
        fusion_down=1,
        fusion_channels=(24, 32),
        layers=3,
        blocks=12,
        ops=ALL_OPS,
        dec_channels=96,
        dec_blocks=8,
        cls_channels=(32, 64, 128, 160),
    )
)
