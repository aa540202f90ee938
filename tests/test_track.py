"""Tracking: a still face gives a still crop, a moving face is followed, identities persist."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.align import CROP_SIZE, crop_matrix, landmarks4_from_yunet5
from facecam.detect import Face, MediaPipeDetector
from facecam.track import FaceTracker, OneEuroFilter, box_iou

FPS = 30.0
SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
# a webcam-sized face: eyes 50 px apart
TRUTH = np.array([[300.0, 200.0], [350.0, 200.0], [325.0, 230.0], [325.0, 255.0]])


def crop_corners(l4: np.ndarray) -> np.ndarray:
    """Where the corners of the aligned crop fall in the image (pixels), ``(4, 2)``."""
    inv = cv2.invertAffineTransform(crop_matrix(l4, CROP_SIZE))
    s = CROP_SIZE
    return np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]], np.float64) @ inv.T


def jitter(landmark_seq: list[np.ndarray]) -> np.ndarray:
    """Frame-to-frame displacement (image pixels) of the crop's corners, worst corner per step."""
    corners = np.array([crop_corners(l4) for l4 in landmark_seq])
    return np.linalg.norm(np.diff(corners, axis=0), axis=2).max(axis=1)


def face_at(l4: np.ndarray, score: float = 0.9) -> Face:
    lo, hi = l4.min(0) - 30, l4.max(0) + 30
    return Face(box_px=(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]), landmarks4_px=l4, score=score)


def test_still_face_with_landmark_noise_gives_a_still_crop():
    rng = np.random.default_rng(0)
    tracker = FaceTracker()
    raw, smooth = [], []
    for i in range(120):
        noisy = TRUTH + rng.normal(0.0, 1.0, TRUTH.shape)  # 1 px detector noise per coordinate
        (tracked,) = tracker.update([face_at(noisy)], i / FPS)
        raw.append(noisy)
        smooth.append(tracked.landmarks4_px)
    raw_j, smooth_j = jitter(raw)[20:], jitter(smooth)[20:]
    assert smooth_j.max() < 1.5  # pixels, worst corner, worst frame
    assert smooth_j.mean() < 0.25 * raw_j.mean()
    assert np.abs(smooth[-1] - TRUTH).max() < 1.5  # steady, and steady in the right place


def test_moving_face_is_followed_within_a_few_frames():
    rng = np.random.default_rng(1)
    tracker = FaceTracker()
    t = 0
    for _ in range(30):
        tracker.update([face_at(TRUTH + rng.normal(0, 1.0, TRUTH.shape))], t / FPS)
        t += 1
    moved = TRUTH + [40.0, 0.0]  # the user leans sideways
    errors = []
    for _ in range(10):
        (tracked,) = tracker.update([face_at(moved + rng.normal(0, 1.0, TRUTH.shape))], t / FPS)
        errors.append(np.abs(tracked.landmarks4_px - moved).max())
        t += 1
    assert errors[0] > 5  # it is a filter, not a pass-through
    assert max(errors[4:]) < 3.0, errors  # caught up within 5 frames (~170 ms)


def test_steady_motion_lags_by_only_a_few_pixels():
    rng = np.random.default_rng(2)
    filt = OneEuroFilter()
    lags = []
    for i in range(60):
        truth = TRUTH + [4.0 * i, 0.0]  # 120 px/s across the frame
        out = filt(truth + rng.normal(0, 1.0, TRUTH.shape), i / FPS)
        lags.append(np.abs(out - truth).max())
    assert np.mean(lags[30:]) < 6.0


def test_one_euro_filter_basics():
    filt = OneEuroFilter()
    assert np.array_equal(filt(TRUTH, 0.0), TRUTH)
    for i in range(1, 10):
        np.testing.assert_allclose(filt(TRUTH, i / FPS), TRUTH)
    with pytest.raises(ValueError, match=r"unexpected point shape: \(5, 2\) != \(4, 2\)"):
        filt(np.zeros((5, 2)), 1.0)
    with pytest.raises(ValueError, match="min_cutoff_hz=0"):
        OneEuroFilter(min_cutoff_hz=0)


def test_identities_persist_and_missed_faces_are_held_then_dropped():
    left, right = TRUTH, TRUTH + [200.0, 0.0]
    tracker = FaceTracker(max_missed=2)
    first = {round(f.landmarks4_px[0, 0]): f.track_id for f in tracker.update([face_at(left), face_at(right)], 0.0)}
    swapped = tracker.update([face_at(right), face_at(left)], 1 / FPS)  # detector order changes
    assert {round(f.landmarks4_px[0, 0]): f.track_id for f in swapped} == first
    # the right face is missed: held (same landmarks) for max_missed frames, then gone
    for k in (1, 2):
        faces = tracker.update([face_at(left)], (1 + k) / FPS)
        held = [f for f in faces if f.track_id == first[500]]
        assert len(held) == 1 and held[0].missed_frames == k
    assert [f.track_id for f in tracker.update([face_at(left)], 4 / FPS)] == [first[300]]
    # it comes back: a new track id
    back = tracker.update([face_at(left), face_at(right)], 5 / FPS)
    assert {f.track_id for f in back} == {first[300], max(first.values()) + 1}


def test_tracked_faces_largest_first_up_to_the_cap():
    small, big = TRUTH, (TRUTH - TRUTH.mean(0)) * 2 + TRUTH.mean(0) + [250.0, 0.0]
    faces = FaceTracker(max_faces=1).update([face_at(small), face_at(big)], 0.0)
    assert len(faces) == 1 and faces[0].landmarks4_px[0, 0] > 400


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


@pytest.mark.skipif(not (SHARED / "faces" / "index.csv").is_file(), reason="../shared/faces missing")
def test_real_detector_on_a_still_face_with_sensor_noise():
    """A still photo with fresh sensor noise each frame: the tracked crop moves less than the raw one."""
    with open(SHARED / "faces" / "index.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["source"] == "lfw" and r["split"] == "test")
    face = cv2.resize(cv2.imread(str(SHARED / "faces" / row["path"])), (300, 300))
    canvas = np.full((480, 640, 3), 110, np.uint8)
    canvas[60:360, 170:470] = face
    truth = landmarks4_from_yunet5(np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(5)]))
    truth = truth * 2 + [170, 60]
    rng = np.random.default_rng(3)
    tracker = FaceTracker()
    raw, smooth = [], []
    with MediaPipeDetector() as det:
        for i in range(45):
            noisy = np.clip(canvas + rng.normal(0, 6, canvas.shape), 0, 255).astype(np.uint8)
            (found,) = det.detect(noisy, int(i * 1000 / FPS))
            (tracked,) = tracker.update([found], i / FPS)
            raw.append(found.landmarks4_px)
            smooth.append(tracked.landmarks4_px)
    iod = np.linalg.norm(truth[1] - truth[0])
    assert np.linalg.norm(smooth[-1] - truth, axis=1).mean() < 0.15 * iod
    assert jitter(smooth)[10:].mean() < 0.5 * jitter(raw)[10:].mean()
