"""Degradation synthesis: kernels, blur, camera model, noise statistics and the full pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from training.degrade import (
    Blur,
    DegradationConfig,
    DegradationParams,
    Degrader,
    GammaResponse,
    TabulatedResponse,
    anisotropic_gaussian_kernels,
    apply_degradation,
    blur,
    degrade,
    delta_kernels,
    demosaic_bilinear,
    mosaic_rggb,
    motion_kernels,
    noise_variance,
    poisson_gaussian_noise,
    sample_params,
)

torch.set_num_threads(1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_faces(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images in [0.1, 0.9] standing in for faces."""
    x = torch.rand(n, 3, size // 8, size // 8, generator=gen(seed))
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return 0.1 + 0.8 * x


# ---------------------------------------------------------------- kernels


def test_motion_kernels_are_normalised_sized_and_varied() -> None:
    sizes = [13, 17, 21, 27, 27, 27]
    k = motion_kernels(sizes, gen(1))
    assert k.shape == (6, 27, 27)
    assert (k >= 0).all()
    torch.testing.assert_close(k.sum(dim=(1, 2)), torch.ones(6))
    for kernel, size in zip(k, sizes):
        ys, xs = torch.nonzero(kernel > 0, as_tuple=True)
        lo, hi = (27 - size) // 2, (27 + size) // 2  # centred size x size box
        assert ys.min() >= lo and xs.min() >= lo and ys.max() <= hi and xs.max() <= hi
        longer = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
        assert longer >= size - 3, "the path should span the requested size"
    flat = k.flatten(1)
    dist = torch.cdist(flat, flat) + torch.eye(6)
    assert dist.min() > 1e-3, "two kernels came out identical"


def test_single_size_motion_kernel_has_requested_shape() -> None:
    assert motion_kernels([15], gen()).shape == (1, 15, 15)


@pytest.mark.parametrize("sizes", [[], [14], [1]])
def test_motion_kernels_reject_bad_sizes(sizes: list[int]) -> None:
    with pytest.raises(ValueError, match="odd sizes"):
        motion_kernels(sizes, gen())


def test_anisotropic_gaussian_moments_follow_sigmas() -> None:
    s1, s2 = torch.tensor([1.0, 2.5]), torch.tensor([2.0, 1.2])
    k = anisotropic_gaussian_kernels(s1, s2, torch.zeros(2), 31).double()
    assert k.shape == (2, 31, 31) and (k >= 0).all()
    torch.testing.assert_close(k.sum(dim=(1, 2)), torch.ones(2, dtype=torch.float64))
    r = torch.arange(31, dtype=torch.float64) - 15
    var_x = (k.sum(dim=1) * r**2).sum(dim=1)
    var_y = (k.sum(dim=2) * r**2).sum(dim=1)
    torch.testing.assert_close(var_x, (s1**2).double(), rtol=0.02, atol=0.02)
    torch.testing.assert_close(var_y, (s2**2).double(), rtol=0.02, atol=0.02)


def test_anisotropic_gaussian_rotation_swaps_axes() -> None:
    s1, s2 = torch.tensor([2.5]), torch.tensor([1.0])
    k0 = anisotropic_gaussian_kernels(s1, s2, torch.zeros(1), 21)
    k90 = anisotropic_gaussian_kernels(s1, s2, torch.full((1,), torch.pi / 2), 21)
    torch.testing.assert_close(k90[0], k0[0].T, atol=1e-6, rtol=0)
    assert not torch.allclose(k0, k90, atol=1e-4)


def test_gaussian_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"sigma2: expected shape \(2,\)"):
        anisotropic_gaussian_kernels(torch.ones(2), torch.ones(3), torch.zeros(2), 9)


# ---------------------------------------------------------------- blur


def test_blur_is_true_convolution_with_reflected_borders() -> None:
    x = torch.rand(2, 3, 20, 24, generator=gen(2), dtype=torch.float64)
    k = torch.rand(2, 5, 5, generator=gen(3), dtype=torch.float64)
    k[:, 0, :] = 0  # asymmetric: convolution and correlation differ
    k /= k.sum(dim=(1, 2), keepdim=True)
    y = blur(x, k)
    for i in range(2):
        for c in range(3):
            ref = ndimage.convolve(x[i, c].numpy(), k[i].numpy(), mode="mirror")
            np.testing.assert_allclose(y[i, c].numpy(), ref, atol=1e-12)


def test_delta_kernel_is_identity_and_module_equals_function() -> None:
    x = torch.rand(3, 3, 16, 16, generator=gen(4))
    torch.testing.assert_close(blur(x, delta_kernels(3, 7)), x)
    k = motion_kernels([7, 9, 9], gen(5))
    torch.testing.assert_close(Blur()(x, k), blur(x, k))


def test_blur_gradcheck() -> None:
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    k = torch.rand(1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(blur, (x, k))


@pytest.mark.parametrize(
    ("x", "k", "match"),
    [
        (torch.rand(2, 3, 16), torch.rand(2, 3, 3), r"expected shape \(N, C, H, W\), got \(2, 3, 16\)"),
        (torch.rand(2, 3, 16, 16), torch.rand(3, 3, 3), r"expected shape \(2, K, K\), got \(3, 3, 3\)"),
        (torch.rand(1, 3, 16, 16), torch.rand(1, 4, 4), "odd size"),
        (torch.rand(1, 3, 8, 8), torch.rand(1, 17, 17), "larger than 8x8"),
    ],
)
def test_blur_rejects_bad_shapes(x: torch.Tensor, k: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        blur(x, k)


# ---------------------------------------------------------------- camera


def test_gamma_response_round_trip() -> None:
    crf = GammaResponse()
    g = crf.sample(4, gen(6))
    assert ((g >= 1.5) & (g <= 2.5)).all()
    x = torch.rand(4, 3, 8, 8, generator=gen(7))
    irr = crf.to_irradiance(x, g)
    assert (irr <= x + 1e-7).all(), "gamma >= 1 darkens in irradiance"
    torch.testing.assert_close(crf.to_image(irr, g), x, atol=1e-5, rtol=0)


def test_tabulated_response_matches_the_curve_it_tabulates() -> None:
    grid = torch.linspace(0, 1, 1025)
    table = TabulatedResponse(torch.stack([grid ** (1 / 2.2), grid ** (1 / 1.6)]))
    param = torch.tensor([1.0, 0.0])
    x = 0.05 + 0.9 * torch.rand(2, 3, 8, 8, generator=gen(8))
    expected = GammaResponse().to_irradiance(x, torch.tensor([1.6, 2.2]))
    torch.testing.assert_close(table.to_irradiance(x, param), expected, atol=2e-3, rtol=0)
    torch.testing.assert_close(table.to_image(table.to_irradiance(x, param), param), x, atol=1e-5, rtol=0)
    assert set(table.sample(50, gen()).tolist()) == {0.0, 1.0}


def test_tabulated_response_rejects_non_monotone_curves() -> None:
    with pytest.raises(ValueError, match="increase strictly"):
        TabulatedResponse(torch.tensor([[0.0, 0.7, 0.5, 1.0]]))


def test_mosaic_samples_rggb() -> None:
    x = torch.rand(1, 3, 4, 4, generator=gen(9))
    raw = mosaic_rggb(x)[0, 0]
    assert raw[0, 0] == x[0, 0, 0, 0] and raw[1, 1] == x[0, 2, 1, 1]
    assert raw[0, 1] == x[0, 1, 0, 1] and raw[1, 0] == x[0, 1, 1, 0]


def test_demosaic_keeps_samples_and_flat_colours() -> None:
    flat = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1).expand(2, 3, 9, 10).contiguous()
    torch.testing.assert_close(demosaic_bilinear(mosaic_rggb(flat)), flat)
    x = torch.rand(1, 3, 8, 8, generator=gen(10))
    rgb = demosaic_bilinear(mosaic_rggb(x))
    torch.testing.assert_close(mosaic_rggb(rgb), mosaic_rggb(x))


def test_demosaic_rejects_rgb() -> None:
    with pytest.raises(ValueError, match=r"expected shape \(N, 1, H, W\), got \(1, 3, 8, 8\)"):
        demosaic_bilinear(torch.rand(1, 3, 8, 8))


# ---------------------------------------------------------------- noise


def test_noise_variance_follows_signal_dependent_model() -> None:
    levels = torch.tensor([0.02, 0.1, 0.3, 0.6, 0.9, 0.5])
    sigma_s = torch.tensor([0.16, 0.05, 0.1, 0.01, 0.16, 0.0])
    sigma_c = torch.tensor([0.01, 0.06, 0.05, 0.03, 0.0, 0.04])
    flat = levels.view(-1, 1, 1, 1).expand(6, 1, 256, 256).contiguous()
    noisy = poisson_gaussian_noise(flat, sigma_s, sigma_c, gen(11))
    measured = (noisy - flat).flatten(1).var(dim=1)
    expected = levels * sigma_s**2 + sigma_c**2
    torch.testing.assert_close(measured, expected, rtol=0.03, atol=0)
    torch.testing.assert_close(noisy.flatten(1).mean(dim=1), levels, atol=2e-3, rtol=0)
    torch.testing.assert_close(noise_variance(flat, sigma_s, sigma_c)[:, 0, 0, 0], expected)


def test_noise_rejects_wrong_sigma_shape() -> None:
    with pytest.raises(ValueError, match=r"sigma_s: expected shape \(2,\), got \(3,\)"):
        poisson_gaussian_noise(torch.rand(2, 1, 4, 4), torch.ones(3), torch.ones(2), gen())


# ---------------------------------------------------------------- pipeline


def only(**flags: float) -> DegradationConfig:
    probs = {"p_blur": 0.0, "p_noise": 0.0, "p_lowlight": 0.0}
    probs.update(flags)
    return DegradationConfig(**probs)


@pytest.mark.parametrize("linear", [True, False])
def test_lowlight_scales_irradiance_by_r(linear: bool) -> None:
    x = smooth_faces(8)
    y, c, p = degrade(x, only(p_lowlight=1.0).replace(linear_lowlight=linear), gen(12))
    assert (c == torch.tensor([0.0, 0.0, 1.0])).all()
    assert ((p.r >= 0.05) & (p.r <= 0.5)).all()
    crf = GammaResponse()
    irr_y = y if linear else crf.to_irradiance(y, p.crf)
    ratio = irr_y.mean(dim=(1, 2, 3)) / crf.to_irradiance(x, p.crf).mean(dim=(1, 2, 3))
    torch.testing.assert_close(ratio, p.r, rtol=1e-3, atol=0)
    assert (y.mean(dim=(1, 2, 3)) < x.mean(dim=(1, 2, 3))).all()


def test_linear_lowlight_keeps_dark_noisy_faces_dark() -> None:
    x = smooth_faces(4)
    p = DegradationParams.from_values(
        torch.full((4,), 2.2), r=torch.full((4,), 0.15), sigma_s=torch.full((4,), 0.1), sigma_c=torch.full((4,), 0.1)
    )
    linear = apply_degradation(x, p, gen(21))
    rendered = apply_degradation(x, p, gen(21), DegradationConfig(linear_lowlight=False))
    # Re-applying the response lifts the clipped read noise into a grey fog.
    assert linear.mean() < 0.15 < rendered.mean()


def test_noise_only_keeps_mean_and_adds_variance() -> None:
    x = torch.full((4, 3, 64, 64), 0.6)
    y, c, p = degrade(x, only(p_noise=1.0), gen(13))
    assert (c == torch.tensor([0.0, 1.0, 0.0])).all()
    assert ((p.sigma_s >= 0.01) & (p.sigma_s <= 0.16) & (p.sigma_c >= 0.01) & (p.sigma_c <= 0.06)).all()
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), torch.full((4,), 0.6), atol=0.02, rtol=0)
    assert (y.std(dim=(1, 2, 3)) > 0.01).all()


def test_labels_match_what_was_applied() -> None:
    x = smooth_faces(64)
    cfg = DegradationConfig()
    y, c, p = degrade(x, cfg, gen(14))
    torch.testing.assert_close(c, p.labels)
    assert c.shape == (64, 3) and c.dtype == torch.float32
    for b in range(3):  # each degradation present in some images and absent in others
        assert 0 < c[:, b].sum() < 64
    delta = delta_kernels(64, cfg.kernel_size)
    is_delta = (p.kernels == delta).flatten(1).all(dim=1)
    assert torch.equal(is_delta, ~p.blur)
    assert torch.equal(p.r < 1, p.lowlight) and torch.equal(p.sigma_s > 0, p.noise)
    changed = (y - x).abs().flatten(1).amax(dim=1) > 1e-6
    assert torch.equal(changed, c.sum(dim=1) > 0), "exactly the labelled images change"
    blur_only = (c == torch.tensor([1.0, 0.0, 0.0])).all(dim=1)
    torch.testing.assert_close(y[blur_only], blur(x[blur_only], p.kernels[blur_only]).clamp(0, 1))
    dark = p.lowlight & ~p.noise
    assert (y[dark].mean(dim=(1, 2, 3)) < x[dark].mean(dim=(1, 2, 3))).all()


def test_same_seed_same_output_other_seed_differs() -> None:
    x = smooth_faces(6)
    a = degrade(x, DegradationConfig(), gen(15))
    b = degrade(x, DegradationConfig(), gen(15))
    c = degrade(x, DegradationConfig(), gen(16))
    assert torch.equal(a.images, b.images) and torch.equal(a.params.kernels, b.params.kernels)
    assert not torch.equal(a.images, c.images)
    d = Degrader(DegradationConfig())(x, gen(15))
    assert torch.equal(a.images, d.images)


def test_fixed_params_reproduce_a_chosen_degradation() -> None:
    x = smooth_faces(2)
    k = motion_kernels([15, 15], gen(17))
    p = DegradationParams.from_values(
        torch.full((2,), 2.2), kernels=k, r=torch.tensor([0.2, 0.3]),
        sigma_s=torch.full((2,), 0.1), sigma_c=torch.full((2,), 0.05),
    )
    assert (p.labels == 1).all()
    y1 = apply_degradation(x, p, gen(18))
    y2 = apply_degradation(x, p, gen(18))
    assert torch.equal(y1, y2) and y1.shape == x.shape
    assert y1.min() >= 0 and y1.max() <= 1
    clean = DegradationParams.from_values(torch.full((2,), 2.2))
    assert (clean.labels == 0).all()
    torch.testing.assert_close(apply_degradation(x, clean, gen()), x)


def test_noise_on_rgb_irradiance_differs_from_mosaic_noise() -> None:
    x = smooth_faces(2)
    p = DegradationParams.from_values(torch.full((2,), 2.2), sigma_s=torch.full((2,), 0.1), sigma_c=torch.full((2,), 0.05))
    mosaic = apply_degradation(x, p, gen(19))
    rgb = apply_degradation(x, p, gen(19), DegradationConfig(noise_on_mosaic=False))
    # Demosaicked noise is spatially correlated: neighbouring residuals agree more.
    def neighbour_corr(y: torch.Tensor) -> float:
        r = (y - x)[:, 1]
        return float(torch.corrcoef(torch.stack([r[:, :, :-1].flatten(), r[:, :, 1:].flatten()]))[0, 1])
    assert neighbour_corr(mosaic) > neighbour_corr(rgb) + 0.1


def test_sample_params_shapes_and_ranges() -> None:
    cfg = DegradationConfig(p_blur=1.0, p_motion=0.5)
    p = sample_params(32, cfg, gen(20))
    assert p.kernels.shape == (32, 27, 27) and len(p) == 32
    torch.testing.assert_close(p.kernels.sum(dim=(1, 2)), torch.ones(32))
    assert ((p.crf >= 1.5) & (p.crf <= 2.5)).all()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"p_blur": 1.5}, "p_blur: expected a probability"),
        ({"motion_sizes": (12, 27)}, "motion_sizes: expected odd"),
        ({"r": (0.5, 0.1)}, r"r: expected"),
        ({"gaussian_size": 20}, "gaussian_size"),
    ],
)
def test_config_rejects_bad_values(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DegradationConfig().replace(**changes)


def test_degrade_rejects_grayscale() -> None:
    with pytest.raises(ValueError, match=r"expected shape \(N, 3, H, W\), got \(2, 1, 8, 8\)"):
        degrade(torch.rand(2, 1, 8, 8), DegradationConfig(), gen())


def test_pipeline_accepts_measured_response_curves() -> None:
    grid = torch.linspace(0, 1, 256)
    curves = TabulatedResponse(torch.stack([grid ** (1 / 2.0), grid ** (1 / 2.4)]))
    cfg = only(p_lowlight=1.0).replace(crf=curves, linear_lowlight=False)
    x = smooth_faces(4)
    y, _, p = degrade(x, cfg, gen(22))
    assert set(p.crf.tolist()) <= {0.0, 1.0}
    ratio = curves.to_irradiance(y, p.crf).mean(dim=(1, 2, 3)) / curves.to_irradiance(x, p.crf).mean(dim=(1, 2, 3))
    torch.testing.assert_close(ratio, p.r, rtol=5e-3, atol=0)
    with pytest.raises(TypeError, match="crf: expected a ResponseCurve"):
        DegradationConfig(crf=2.2)  # type: ignore[arg-type]
