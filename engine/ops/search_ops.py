"""The fusion search space: the paper's ten operators plus the zero connection (sec. 3.1, fig. 4).

Every operator maps ``(B, C, H, W) -> (B, C, H, W)``. Convolutions follow DARTS' ReLU -> conv -> BN
order so operator outputs are normalised and can be summed on an edge; each BN sits right after a
convolution and folds into it at inference (:func:`engine.ops.layers.fuse_modules`).

Registered names (registration order is the default column order of the architecture weights):
``zero``, ``identity``, ``dil_conv_3x3``, ``dil_conv_5x5``, ``sep_conv_3x3``, ``sep_conv_5x5``,
``self_attention``, ``res2block``, ``res_op``, ``deveil``, ``fft_op``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.ops.dft import wiener_deconvolution
from engine.ops.layers import ConvBN, ReLUConvBN, match_format
from engine.ops.registry import register_op

__all__ = [
    "Zero",
    "DilConv",
    "SepConv",
    "PooledSelfAttention",
    "Res2Block",
    "ResidualOp",
    "DeveilOp",
    "FFTOp",
]


class Zero(nn.Module):
    """The "no connection" operator: zeros of the input's shape (kept in the graph for gradients)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mul(0.0)


class DilConv(nn.Sequential):
    """ReLU -> depthwise ``k x k`` conv with ``dilation`` -> pointwise conv -> BN (DARTS ``dil_conv``)."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(
                channels,
                channels,
                kernel,
                padding=dilation * (kernel - 1) // 2,
                dilation=dilation,
                groups=channels,
                bias=False,
            ),
            ConvBN(channels, channels, 1),
        )


class SepConv(nn.Sequential):
    """Two stacked undilated :class:`DilConv` units (DARTS ``sep_conv``)."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__(DilConv(channels, kernel, 1), DilConv(channels, kernel, 1))


def _pool_factor(h: int, w: int, target: int) -> int:
    """Largest power of two <= ``target`` dividing both ``h`` and ``w`` (pool windows tile exactly)."""
    k = target
    while k > 1 and (h % k or w % k):
        k //= 2
    return k


class PooledSelfAttention(nn.Module):
    """Single-head self-attention whose keys/values come from ``pool x pool`` average-pooled features.

    Full attention at ``H W`` tokens costs ``(H W)^2``; pooling keys and values by 4 divides that by
    16 while every query still sees the whole face. Output goes through a 1x1 conv + BN.
    """

    def __init__(self, channels: int, pool: int = 4) -> None:
        super().__init__()
        self.pool = pool
        self.scale = channels**-0.5
        self.q = nn.Conv2d(channels, channels, 1, bias=False)
        self.kv = nn.Conv2d(channels, 2 * channels, 1, bias=False)
        self.proj = ConvBN(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        k = _pool_factor(h, w, self.pool)
        pooled = F.avg_pool2d(x, k) if k > 1 else x
        q = self.q(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        key, value = self.kv(pooled).flatten(2).chunk(2, dim=1)  # (B, C, n) each
        attn = torch.softmax((q @ key) * self.scale, dim=-1)  # (B, HW, n)
        out = (attn @ value.transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
        return self.proj(out)


class Res2Block(nn.Module):
    """Res2Net block (scale 4): hierarchical 3x3 convs over channel groups, 1x1 in/out, residual.

    Groups ``x1..x4`` of ``C / 4`` channels: ``y1 = x1``, ``y2 = K2(x2)``, ``yi = Ki(xi + y(i-1))``;
    the output ``x + BN(conv1x1(cat(y)))`` sees receptive fields 1, 3, 5 and 7 at once.
    ``C`` must be divisible by the scale.
    """

    def __init__(self, channels: int, scale: int = 4) -> None:
        super().__init__()
        if channels % scale:
            raise ValueError(f"res2block needs channels divisible by {scale}, got {channels}")
        self.width = channels // scale
        self.inp = ReLUConvBN(channels, channels, 1)
        self.convs = nn.ModuleList(ConvBN(self.width, self.width, 3) for _ in range(scale - 1))
        self.out = ConvBN(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        first, *rest = torch.relu(self.inp(x)).split(self.width, dim=1)
        ys = [first]
        for i, (part, conv) in enumerate(zip(rest, self.convs)):
            ys.append(torch.relu(conv(match_format(part, x) if i == 0 else part + ys[-1])))
        return x + self.out(torch.cat(ys, dim=1))


class ResidualOp(nn.Module):
    """Residual operator (fig. 4a): two 3x3 conv blocks estimate the noise, which is subtracted."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.noise = nn.Sequential(ReLUConvBN(channels, channels, 3), ReLUConvBN(channels, channels, 3))

    def forward(self, x: Tensor) -> Tensor:
        return x - self.noise(x)


class DeveilOp(nn.Module):
    """Deveiling operator (fig. 4c, eq. 3): a mask ``A`` learned from the features, output ``A * x``.

    The paper's ``A = (y - n) / (r y)`` brightens (``A > 1``) under low light. Here
    ``A = MAX_GAIN * sigmoid(z - log(MAX_GAIN - 1))`` with ``z = conv2(relu(conv1(relu(x))))``:
    positive, 1 at ``z = 0`` (an untrained op passes features through) and bounded by ``MAX_GAIN``,
    because an unbounded mask let chained deveil ops of a freshly derived network overflow to inf.
    """

    MAX_GAIN = 4.0

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mask = nn.Sequential(ReLUConvBN(channels, channels, 3), ReLUConvBN(channels, channels, 3))

    def forward(self, x: Tensor) -> Tensor:
        z = self.mask(x) - math.log(self.MAX_GAIN - 1.0)
        return self.MAX_GAIN * torch.sigmoid(z) * x


class FFTOp(nn.Module):
    """FFT operator (fig. 4b, eq. 2): split, 3x3 conv each half, Wiener step, 1x1 back to ``C``.

    The two halves of the ``C`` input channels each go through a ReLU-3x3 conv-BN (one grouped
    convolution, ``groups=2``) giving ``x1`` (observation) and ``x2`` (kernel), ``C / 2`` channels
    each; :func:`~engine.ops.dft.wiener_deconvolution` (float32, orthonormal matmul DFT,
    ``eps = 0.01``) combines them and a 1x1 conv + BN restores ``C`` channels and normalises the
    scale. Working on ``C / 2`` channels halves the transform cost, which dominates at high
    resolution. ``C`` must be even.
    """

    def __init__(self, channels: int, eps: float = 0.01) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"fft_op needs an even channel count, got {channels}")
        self.eps = eps
        self.convs = ReLUConvBN(channels, channels, 3, groups=2)
        self.out = ConvBN(channels // 2, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.convs(x).chunk(2, dim=1)
        return self.out(match_format(wiener_deconvolution(x1, x2, self.eps), x))


register_op("zero")(lambda c: Zero())
register_op("identity")(lambda c: nn.Identity())
register_op("dil_conv_3x3")(lambda c: DilConv(c, 3, 2))
register_op("dil_conv_5x5")(lambda c: DilConv(c, 5, 2))
register_op("sep_conv_3x3")(lambda c: SepConv(c, 3))
register_op("sep_conv_5x5")(lambda c: SepConv(c, 5))
register_op("self_attention")(lambda c: PooledSelfAttention(c))
register_op("res2block")(lambda c: Res2Block(c))
register_op("res_op")(lambda c: ResidualOp(c))
register_op("deveil")(lambda c: DeveilOp(c))
register_op("fft_op")(lambda c: FFTOp(c))
