"""Face detectors on real faces: LFW photos on a larger canvas and frames of the sample webcam clip."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.align import landmarks4_from_yunet5
from facecam.detect import MediaPipeDetector, YuNetDetector, open_detector

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SAMPLE = ROOT / "assets" / "sample" / "webcam_sample.mkv"

pytestmark = pytest.mark.skipif(not (SHARED / "faces" / "index.csv").is_file(), reason="../shared/faces missing")


def lfw_faces(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` LFW test photos (150x150 BGR) with their 4 alignment points (pixels) from index.csv."""
    with open(SHARED / "faces" / "index.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "lfw" and r["split"] == "test"][:n]
    out = []
    for r in rows:
        five = np.array([[float(r[f"x{i}"]), float(r[f"y{i}"])] for i in range(5)])
        out.append((cv2.imread(str(SHARED / "faces" / r["path"])), landmarks4_from_yunet5(five)))
    return out


def on_canvas(face: np.ndarray, offset: tuple[int, int], scale: float = 1.0, size=(480, 640)) -> np.ndarray:
    canvas = np.full((*size, 3), 128, np.uint8)
    face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    x, y = offset
    canvas[y : y + face.shape[0], x : x + face.shape[1]] = face
    return canvas


@pytest.fixture(scope="module", params=["mediapipe", "yunet"])
def detector(request):
    with open_detector(request.param) as det:
        yield det


def test_landmarks_land_on_the_face_in_image_pixels(detector):
    errors = []
    for i, (face, l4) in enumerate(lfw_faces(8)):
        offset = (150 + 20 * i, 60 + 10 * i)  # a webcam-sized face: the 150 px photo at 2x
        found = detector.detect(on_canvas(face, offset, scale=2.0), 33 * (i + 1))
        assert len(found) == 1, f"face {i}: {len(found)} detections"
        truth = l4 * 2.0 + offset
        iod = np.linalg.norm(truth[1] - truth[0])
        errors.append(np.linalg.norm(found[0].landmarks4_px - truth, axis=1).mean() / iod)
        x, y, w, h = found[0].box_px
        assert x <= truth[:, 0].min() and truth[:, 0].max() <= x + w and y <= truth[:, 1].min()
    # detector keypoint definitions differ a little from the dataset's YuNet points; a units or
    # ordering mistake would be off by a whole face
    assert np.mean(errors) < 0.15, errors
    assert max(errors) < 0.3, errors


def test_eyes_are_ordered_left_to_right_in_the_image(detector):
    face, _ = lfw_faces(1)[0]
    mirrored = face[:, ::-1].copy()
    for i, image in enumerate((on_canvas(face, (150, 80), 2.0), on_canvas(mirrored, (150, 80), 2.0))):
        (found,) = detector.detect(image, 1000 + 33 * i)
        assert found.landmarks4_px[0, 0] < found.landmarks4_px[1, 0]


def test_several_faces_largest_first_up_to_the_cap():
    (a, _), (b, _) = lfw_faces(2)
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[100:325, 20:245] = cv2.resize(a, (225, 225))  # smaller, on the left
    canvas[90:390, 300:600] = cv2.resize(b, (300, 300))  # larger, on the right
    for det_cls in (MediaPipeDetector, YuNetDetector):
        with det_cls(max_faces=4) as det:
            found = det.detect(canvas, 5)
        assert len(found) == 2, det_cls.name
        centres_x = [f.box_px[0] + f.box_px[2] / 2 for f in found]
        assert 300 < centres_x[0] < 600 and 20 < centres_x[1] < 245, centres_x
        with det_cls(max_faces=1) as det:
            (only,) = det.detect(canvas, 5)
        assert only.box_px == found[0].box_px


def test_blank_frame_has_no_faces(detector):
    assert detector.detect(np.full((240, 320, 3), 90, np.uint8), 99_000) == []


def test_sample_clip_face_found_in_nearly_every_frame(detector):
    cap = cv2.VideoCapture(str(SAMPLE))
    found = total = 0
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 4 == 0:
            faces = detector.detect(frame, 200_000 + 33 * i)
            total += 1
            # the person's head is in the upper middle of the frame (the shirt print may add a 'face')
            found += any(f.box_px[1] < 200 and 200 < f.box_px[0] + f.box_px[2] / 2 < 450 for f in faces)
        i += 1
    cap.release()
    assert total == 20 and found >= 19


def test_misuse_errors_name_the_values():
    with open_detector("yunet") as det, pytest.raises(ValueError, match=r"unexpected frame: \(4, 4\) uint8"):
        det.detect(np.zeros((4, 4), np.uint8), 0)
    with pytest.raises(ValueError, match="unknown detector 'haar'"):
        open_detector("haar")
    with pytest.raises(FileNotFoundError):
        MediaPipeDetector(model_path="missing.tflite")
