"""Small building layers shared by the operators and the network blocks.

Convolutions that are followed by batch norm are :class:`ConvBN` units so that inference can fold
the norm into the convolution (:func:`fuse_conv_bn`, :meth:`ConvBN.fuse`, :func:`fuse_modules`), as
timm's re-parameterisable blocks do: the trained form keeps BN for optimisation, the deployed form
is one convolution with a bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ConvBN",
    "fuse_conv_bn",
    "fuse_modules",
    "ReLUConvBN",
    "FiLM",
    "film",
    "check_image_like",
    "resize_to",
    "match_format",
]


def check_image_like(x: Tensor, channels: int | None, name: str = "input") -> None:
    """Raise ``ValueError`` naming the expected and actual shape unless ``x`` is ``(B, C, H, W)``."""
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        want = f"(B, {channels}, H, W)" if channels is not None else "(B, C, H, W)"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold an eval-mode batch norm into the convolution before it.

    ``bn(conv(x)) == fused(x)`` with ``w' = w * g / sqrt(v + eps)`` and
    ``b' = (b - m) * g / sqrt(v + eps) + beta`` per output channel (running statistics).

    Returns:
        A new ``nn.Conv2d`` with a bias, on the same device and dtype.
    """
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


class ConvBN(nn.Module):
    """``Conv2d`` (no bias) followed by ``BatchNorm2d``; :meth:`fuse` returns the folded conv.

    ``padding`` defaults to "same" for odd kernels: ``dilation * (kernel - 1) // 2``.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 1,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            c_in,
            c_out,
            kernel,
            stride=stride,
            padding=dilation * (kernel - 1) // 2,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))

    def fuse(self) -> nn.Conv2d:
        """The equivalent single convolution (uses running statistics: eval-mode semantics)."""
        return fuse_conv_bn(self.conv, self.bn)


def fuse_modules(module: nn.Module) -> nn.Module:
    """Replace, in place and recursively, every sub-module that has a ``fuse()`` by its result.

    Returns ``module`` (or its replacement when ``module`` itself is fusable), in eval mode, so the
    caller can write ``net = fuse_modules(net)``.
    """
    if isinstance(module, ConvBN):
        return module.fuse().eval()
    for name, child in list(module.named_children()):
        fused = fuse_modules(child)
        if fused is not child:
            setattr(module, name, fused)
    return module.eval()


class ReLUConvBN(nn.Sequential):
    """DARTS' ReLU -> Conv -> BN unit (the pre-activation keeps each operator output normalised)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, *, stride: int = 1, dilation: int = 1, groups: int = 1) -> None:
        super().__init__(nn.ReLU(), ConvBN(c_in, c_out, kernel, stride=stride, dilation=dilation, groups=groups))


def film(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """Feature-wise linear modulation ``x * (1 + gamma) + beta``.

    Args:
        x: ``(B, C, H, W)`` features.
        gamma: ``(B, C)`` scale offsets (0 = unchanged).
        beta: ``(B, C)`` shifts.
    """
    return x * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None]


class FiLM(nn.Module):
    """Condition features on a small vector (the degradation prior ``(B, 3)``) via :func:`film`.

    The projection starts at zero so an untrained FiLM is the identity and a pretrained encoder is
    not disturbed when the prior is switched on.
    """

    def __init__(self, channels: int, cond_dim: int = 3) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if cond.ndim != 2 or cond.shape[1] != self.proj.in_features or cond.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"prior: expected shape ({x.shape[0]}, {self.proj.in_features}), got {tuple(cond.shape)}"
            )
        gamma, beta = self.proj(cond.to(x.dtype)).chunk(2, dim=1)
        return film(x, gamma, beta)


def resize_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size`` (no-op when already that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def match_format(x: Tensor, like: Tensor) -> Tensor:
    """``x`` made dense in ``like``'s memory format (channels-last stays channels-last).

    Channel slices and matmul outputs lose the layout; convolutions on CPU then fall back to a slow
    kernel, so operators restore it before their next convolution. A no-op when already dense.
    """
    fmt = torch.channels_last if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous() else torch.contiguous_format
    return x.contiguous(memory_format=fmt)
