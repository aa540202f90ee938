"""Paste-back and scene exposure: seamless faces, a scene lit like the face, no clipped highlights."""

from __future__ import annotations

import numpy as np
import pytest

from engine.align import crop_matrix, warp_to_crop
from facecam.blend import ExposureFollower, FaceCompositor, exposure_lut, face_mask, seam_weight
from facecam.simulate import linear_to_srgb, srgb_to_linear

S = 128
L4 = np.array([[290.0, 210.0], [350.0, 210.0], [320.0, 245.0], [320.0, 275.0]])  # a face in a 480x640 frame


def textured_frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.stack([xx * 0.2 + 40, yy * 0.25 + 30, (xx + yy) * 0.1 + 50], axis=2)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def footprint_mask(shape: tuple[int, int], m: np.ndarray) -> np.ndarray:
    """Frame pixels whose crop coordinates fall inside the crop (bool)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    u = m[0, 0] * xx + m[0, 1] * yy + m[0, 2]
    v = m[1, 0] * xx + m[1, 1] * yy + m[1, 2]
    return (u >= 0) & (u < S) & (v >= 0) & (v < S)


def test_face_mask_is_one_inside_zero_outside_and_soft_between():
    mask = face_mask(S)
    assert mask.shape == (S, S) and mask.dtype == np.float32
    assert mask[S // 2, S // 2] == 1.0 and mask[0, 0] == 0.0 and mask[-1, -1] == 0.0
    row = mask[int(0.54 * S)]  # through the ellipse centre, left to right
    steps = np.abs(np.diff(row))
    assert 0 < steps.max() < 0.25  # no hard edge
    seam = seam_weight(S)
    assert seam[S // 2, S // 2] == 0.0 and seam[0, 0] == 1.0
    assert np.all(seam[mask == 0.0] == 1.0)  # matching is complete wherever the face is not pasted
    with pytest.raises(ValueError, match="feather must be in \\(0, 1\\), got 1.5"):
        face_mask(S, feather=1.5)


def test_pasting_the_frames_own_crop_changes_almost_nothing():
    frame = textured_frame()
    m = crop_matrix(L4, S)
    out = frame.copy()
    FaceCompositor(crop_size=S).paste(out, warp_to_crop(frame, m, S), m)
    diff = np.abs(out.astype(int) - frame)
    assert np.median(diff) == 0 and diff.mean() < 1.0  # only resampling blur inside the face


def test_paste_replaces_the_face_softly_and_leaves_the_rest_bit_exact():
    frame = np.full((480, 640, 3), 60, np.uint8)
    m = crop_matrix(L4, S)
    out = frame.copy()
    bright = np.full((S, S, 3), 220, np.uint8)
    FaceCompositor(crop_size=S).paste(out, bright, m)
    inside = footprint_mask(frame.shape[:2], m)
    np.testing.assert_array_equal(out[~inside], frame[~inside])  # outside the crop: untouched
    centre = out[245, 320].astype(int)
    assert np.all(centre > 200)  # the restored face shows in the middle
    # along a line from the face centre outwards the values fall smoothly to the background
    line = out[245, 320:480, 0].astype(int)
    assert line[-1] == 60 and np.abs(np.diff(line)).max() < 25


def test_seam_matching_pulls_colour_to_the_background_only_at_the_edge():
    comp = FaceCompositor(crop_size=S)
    background = np.full((S, S, 3), (50, 90, 130), np.uint8)
    face = np.full((S, S, 3), (150, 150, 150), np.uint8)
    matched = comp.match_seam(face, background)
    centre = matched[int(0.54 * S), S // 2]
    np.testing.assert_allclose(centre, 150, atol=3)  # the face keeps the engine's colour
    corner = matched[2, 2]
    np.testing.assert_allclose(corner, (50, 90, 130), atol=5)  # the seam takes the frame's


def test_paste_rejects_a_wrong_crop_size():
    with pytest.raises(ValueError, match=r"unexpected crop shape: \(64, 64, 3\) != \(128, 128, 3\)"):
        FaceCompositor(crop_size=S).paste(np.zeros((480, 640, 3), np.uint8), np.zeros((64, 64, 3), np.uint8),
                                          crop_matrix(L4, S))


def test_exposure_lut_identity_gain_and_no_clipped_highlights():
    identity = exposure_lut(np.ones(3))
    assert identity.shape == (1, 256, 3) and identity.dtype == np.uint8
    np.testing.assert_array_equal(identity[0, :, 0], np.arange(256))
    lut = exposure_lut(np.array([3.0, 2.0, 0.5]))[0].astype(int)
    assert np.all(np.diff(lut, axis=0) >= 0)  # monotone
    assert lut[255, 0] == 255 and lut[255, 2] < 255  # brightest input lands on white; a cut darkens
    # shadows get the exact linear-light gain
    expected = np.round(linear_to_srgb(srgb_to_linear(np.float32(40 / 255)) * 3.0) * 255)
    assert lut[40, 0] == expected
    # highlights pushed past white by a 2x gain keep their gradations instead of one flat block
    lut2 = exposure_lut(np.full(3, 2.0))[0, :, 0]
    assert len(np.unique(lut2[180:])) > 25


def test_exposure_measures_a_known_linear_gain():
    rng = np.random.default_rng(0)
    before = rng.integers(10, 120, (2, S, S, 3), dtype=np.uint8)
    gains = np.array([2.0, 2.5, 3.0])
    after = np.round(linear_to_srgb(srgb_to_linear(before / 255.0) * gains) * 255).astype(np.uint8)
    measured = ExposureFollower().measure(before, after, face_mask(S))
    np.testing.assert_allclose(measured, gains, rtol=0.03)
    assert ExposureFollower(max_gain=2.0).measure(before, after, face_mask(S)).max() == 2.0


def test_exposure_limits_a_colour_cast():
    """An engine that tints the face must not recolour the room: channel gains stay near each other."""
    rng = np.random.default_rng(1)
    before = rng.integers(10, 120, (1, S, S, 3), dtype=np.uint8)
    after = np.round(linear_to_srgb(srgb_to_linear(before / 255.0) * [1.0, 1.0, 4.0]) * 255).astype(np.uint8)
    measured = ExposureFollower(max_tint=1.25).measure(before, after, face_mask(S))
    mean = np.exp(np.log(measured).mean())
    assert mean == pytest.approx(4.0 ** (1 / 3), rel=0.03)  # the overall brightening is kept
    assert measured.max() / mean == pytest.approx(1.25, rel=1e-6)
    assert measured.min() / mean < 1.0  # the cast is scaled down, not removed


def test_exposure_follows_smoothly_and_releases_to_exact_passthrough():
    exp = ExposureFollower(time_constant_s=0.5, release_time_constant_s=1.0)
    assert not exp.active
    first = exp.update(np.full(3, 4.0), 0.0)
    np.testing.assert_allclose(first, 4.0)  # the first measurement is taken as is
    after_tau = exp.update(np.full(3, 1.0), 0.5)  # a sudden change: followed at the time constant
    np.testing.assert_allclose(np.log(after_tau), np.log(4.0) * np.exp(-1.0), rtol=1e-6)
    t = 0.5
    while exp.active and t < 20:
        t += 1 / 30
        exp.release(t)
    assert not exp.active and 3.0 < t < 10.0  # faded back over a few seconds, then dropped
    frame = textured_frame()
    np.testing.assert_array_equal(exp.apply(frame, exp.gain), frame)


def test_applying_the_gain_brightens_the_whole_frame_consistently():
    frame = (textured_frame() // 4).astype(np.uint8)  # a dark room
    exp = ExposureFollower()
    out = exp.apply(frame, np.full(3, 4.0))
    lin_in = srgb_to_linear(frame / 255.0).mean()
    lin_out = srgb_to_linear(out / 255.0).mean()
    assert lin_out == pytest.approx(4.0 * lin_in, rel=0.05)
