"""Operator registry (tests generated from it, timm style), the matmul DFT and the Wiener step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.ops import create_op, fuse_modules, list_ops, register_op
from engine.ops.dft import WienerDeconvolution, irdft2, rdft2, wiener_deconvolution
from engine.ops.layers import ConvBN, fuse_conv_bn

torch.set_num_threads(1)

OPS = list_ops()


def _randomise_bn(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_registry_has_the_papers_operators():
    assert set(OPS) == {
        "zero", "identity", "dil_conv_3x3", "dil_conv_5x5", "sep_conv_3x3", "sep_conv_5x5",
        "self_attention", "res2block", "res_op", "deveil", "fft_op",
    }


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register_op("identity")(lambda c: nn.Identity())
    with pytest.raises(KeyError, match="unknown operator 'conv_9x9'"):
        create_op("conv_9x9", 8)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("shape", [(2, 8, 16, 16), (3, 12, 6, 10)])
def test_op_forward_backward_finite(name, shape):
    torch.manual_seed(0)
    op = create_op(name, shape[1]).train()
    x = torch.randn(*shape, requires_grad=True)
    y = op(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in op.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
    if name != "zero":
        assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", OPS)
def test_op_channels_last_matches_contiguous(name):
    torch.manual_seed(0)
    op = create_op(name, 8).eval()
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        ref = op(x)
        got = op.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", OPS)
def test_op_fuse_equals_unfused(name):
    torch.manual_seed(0)
    op = create_op(name, 8).eval()
    _randomise_bn(op)
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        ref = op(x)
        fused = fuse_modules(op)
        got = fused(x)
    assert not any(isinstance(m, (nn.BatchNorm2d, ConvBN)) for m in fused.modules())
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_fuse_conv_bn_matches_conv_then_bn():
    conv = nn.Conv2d(4, 6, 3, padding=2, dilation=2, bias=True)
    bn = nn.BatchNorm2d(6).eval()
    _randomise_bn(bn)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(fuse_conv_bn(conv, bn)(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (7, 9), (8, 5), (1, 4)])
def test_rdft2_matches_torch_fft(size):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    real, imag = rdft2(x)
    ref = torch.fft.rfft2(x)
    torch.testing.assert_close(real, ref.real, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(imag, ref.imag, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (7, 9), (8, 5)])
def test_irdft2_matches_torch_irfft2(size):
    spectrum = torch.fft.rfft2(torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2)))
    got = irdft2(spectrum.real, spectrum.imag, size[1])
    torch.testing.assert_close(got, torch.fft.irfft2(spectrum, s=size), atol=1e-5, rtol=1e-5)


def _wiener_reference(x1: torch.Tensor, x2: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    a = torch.fft.rfft2(x1, norm="ortho")
    b = torch.fft.rfft2(x2, norm="ortho")
    return torch.fft.irfft2(b.conj() * a / (b.abs() ** 2 + eps), s=x1.shape[-2:], norm="ortho")


@pytest.mark.parametrize("size", [(16, 16), (32, 32), (6, 9)])
def test_wiener_matches_torch_fft(size):
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(2, 4, *size, generator=g), torch.randn(2, 4, *size, generator=g)
    torch.testing.assert_close(wiener_deconvolution(x1, x2), _wiener_reference(x1, x2), atol=1e-4, rtol=1e-4)


def test_wiener_gradient_matches_torch_fft():
    g = torch.Generator().manual_seed(4)
    x1, x2 = torch.randn(1, 2, 8, 8, generator=g), torch.randn(1, 2, 8, 8, generator=g) + 1.0
    w = torch.randn(1, 2, 8, 8, generator=g)
    grads = []
    for fn in (wiener_deconvolution, _wiener_reference):
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        (fn(a, b) * w).sum().backward()
        grads.append((a.grad, b.grad))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


def test_wiener_runs_in_float32_under_fp16_and_autocast():
    g = torch.Generator().manual_seed(5)
    # Large features: the unnormalised DC term squared (~(64*64*50)^2) overflows float16.
    x1, x2 = 50 + torch.randn(1, 2, 64, 64, generator=g), 50 + torch.randn(1, 2, 64, 64, generator=g)
    ref = wiener_deconvolution(x1, x2)
    half = wiener_deconvolution(x1.half(), x2.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = wiener_deconvolution(x1, x2)
    # bfloat16 matmuls would be off by ~1e-2 relative; the step must have run in float32.
    torch.testing.assert_close(auto.float(), ref, atol=1e-4, rtol=1e-4)
    ref_half = wiener_deconvolution(x1.half().float(), x2.half().float())  # same rounded inputs
    torch.testing.assert_close(half.float(), ref_half, atol=2e-3, rtol=2e-3)


def test_wiener_bad_input_names_shapes():
    with pytest.raises(ValueError, match=r"\(1, 2, 8, 8\) and \(1, 2, 8, 4\)"):
        wiener_deconvolution(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 4))
    with pytest.raises(ValueError, match="eps must be > 0"):
        wiener_deconvolution(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8), eps=0.0)


def test_wiener_module_equals_function():
    g = torch.Generator().manual_seed(6)
    x1, x2 = torch.randn(1, 3, 8, 8, generator=g), torch.randn(1, 3, 8, 8, generator=g)
    torch.testing.assert_close(WienerDeconvolution(0.05)(x1, x2), wiener_deconvolution(x1, x2, 0.05))


def test_fft_op_stays_finite_in_half_precision():
    op = create_op("fft_op", 8).eval().half()
    x = (30 * torch.randn(1, 8, 32, 32, generator=torch.Generator().manual_seed(7))).half()
    with torch.no_grad():
        assert torch.isfinite(op(x)).all()
