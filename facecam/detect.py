"""Face detection: MediaPipe Tasks BlazeFace (default) with OpenCV YuNet as the fallback.

Both detectors return :class:`Face` results in image pixels with the four alignment points of
:mod:`engine.align`, largest face first, at most ``max_faces`` of them. Haar cascades are not offered:
they give no landmarks, and alignment needs eyes, nose and mouth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from engine.align import landmarks4_from_blazeface6, landmarks4_from_yunet5
from facecam.quiet import native_stderr_silenced

__all__ = [
    "MODELS_DIR",
    "BLAZEFACE_MODEL",
    "YUNET_MODEL",
    "Face",
    "FaceDetector",
    "MediaPipeDetector",
    "YuNetDetector",
    "DETECTORS",
    "open_detector",
]

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
BLAZEFACE_MODEL = MODELS_DIR / "face_detection_short_range.tflite"
YUNET_MODEL = MODELS_DIR / "face_detection_yunet.onnx"


@dataclass(frozen=True)
class Face:
    """One face found in a frame; every coordinate is in image pixels (x right, y down).

    Attributes:
        box_px: ``(x, y, w, h)`` bounding box in pixels.
        landmarks4_px: ``(4, 2)`` float64 alignment points in pixels, order of :mod:`engine.align`
            (image-left eye, image-right eye, nose tip, mouth centre).
        score: detector confidence in [0, 1].
    """

    box_px: tuple[float, float, float, float]
    landmarks4_px: np.ndarray
    score: float

    @property
    def area_px(self) -> float:
        """Box area in square pixels (faces are ranked by it)."""
        return self.box_px[2] * self.box_px[3]


class FaceDetector(Protocol):
    """What the pipeline needs from a detector; both implementations are context managers."""

    name: str

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[Face]:
        """Faces in ``frame_bgr`` (``(H, W, 3)`` uint8 BGR, OpenCV order), largest first.

        ``timestamp_ms`` must increase from call to call (video mode keeps temporal state).
        """
        ...

    def close(self) -> None:
        """Release the model."""
        ...


def _check_frame(frame: np.ndarray) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"unexpected frame: {frame.shape} {frame.dtype} != (H, W, 3) uint8")


def _largest(faces: list[Face], max_faces: int) -> list[Face]:
    return sorted(faces, key=lambda f: f.area_px, reverse=True)[:max_faces]


class MediaPipeDetector:
    """MediaPipe Tasks ``FaceDetector`` (BlazeFace short range) in VIDEO running mode.

    Args:
        model_path: the ``.tflite`` model (defaults to the shipped BlazeFace short-range model).
        min_score: detection threshold. 0.4 rather than MediaPipe's 0.5: noisy, dark webcam frames,
            the very frames this app exists for, score lower (measured on the sample clip under
            ``--simulate bnl``: 40/77 frames found at 0.5, 68/77 at 0.4).
        max_faces: keep at most this many faces, largest first.
    """

    name = "mediapipe-blazeface"

    def __init__(
        self, *, model_path: str | Path = BLAZEFACE_MODEL, min_score: float = 0.4, max_faces: int = 4
    ) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        if not Path(model_path).is_file():
            raise FileNotFoundError(2, "face detector model not found", str(model_path))
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.VIDEO,
            min_detection_confidence=min_score,
        )
        with native_stderr_silenced():
            self._task = vision.FaceDetector.create_from_options(options)
            # The first call logs a memory-alignment warning; make it here, on a blank frame.
            blank = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8))
            self._task.detect_for_video(blank, 0)
        self.max_faces = max_faces
        self._last_ms = 0

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[Face]:
        """Faces in ``frame_bgr`` (``(H, W, 3)`` uint8 BGR), largest first."""
        import mediapipe as mp

        _check_frame(frame_bgr)
        self._last_ms = max(int(timestamp_ms), self._last_ms + 1)  # the task demands increasing stamps
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        result = self._task.detect_for_video(image, self._last_ms)
        h, w = frame_bgr.shape[:2]
        faces = []
        for det in result.detections:
            if len(det.keypoints) < 6:
                continue
            box = det.bounding_box
            pts = np.array([[k.x * w, k.y * h] for k in det.keypoints[:6]], np.float64)
            faces.append(
                Face(
                    box_px=(float(box.origin_x), float(box.origin_y), float(box.width), float(box.height)),
                    landmarks4_px=landmarks4_from_blazeface6(pts),
                    score=float(det.categories[0].score) if det.categories else 0.0,
                )
            )
        return _largest(faces, self.max_faces)

    def close(self) -> None:
        """Shut the MediaPipe task down (idempotent)."""
        with native_stderr_silenced():
            self._task.close()

    def __enter__(self) -> MediaPipeDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class YuNetDetector:
    """OpenCV ``FaceDetectorYN`` (YuNet, five landmarks); slower than BlazeFace on CPU, kept as fallback.

    Args:
        model_path: the ``.onnx`` model (defaults to the shipped YuNet model).
        min_score: detection threshold in [0, 1].
        max_faces: keep at most this many faces, largest first.
    """

    name = "opencv-yunet"

    def __init__(
        self, *, model_path: str | Path = YUNET_MODEL, min_score: float = 0.6, max_faces: int = 4
    ) -> None:
        if not Path(model_path).is_file():
            raise FileNotFoundError(2, "face detector model not found", str(model_path))
        with native_stderr_silenced():  # OpenCV's DNN logs a backend warning on the first run
            self._net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), min_score, 0.3, 50)
            self._net.detect(np.zeros((320, 320, 3), np.uint8))
        self._size: tuple[int, int] = (320, 320)
        self.max_faces = max_faces

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[Face]:
        """Faces in ``frame_bgr`` (``(H, W, 3)`` uint8 BGR), largest first; ``timestamp_ms`` is unused."""
        _check_frame(frame_bgr)
        h, w = frame_bgr.shape[:2]
        if self._size != (w, h):
            self._net.setInputSize((w, h))
            self._size = (w, h)
        _, rows = self._net.detect(frame_bgr)
        faces = []
        for row in [] if rows is None else rows:
            faces.append(
                Face(
                    box_px=tuple(float(v) for v in row[:4]),  # type: ignore[arg-type]
                    landmarks4_px=landmarks4_from_yunet5(row[4:14].reshape(5, 2)),
                    score=float(row[14]),
                )
            )
        return _largest(faces, self.max_faces)

    def close(self) -> None:
        """Nothing to release beyond the Python object; present for the common interface."""

    def __enter__(self) -> YuNetDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


DETECTORS = ("auto", "mediapipe", "yunet")


def open_detector(kind: str = "auto", *, max_faces: int = 4) -> FaceDetector:
    """Open a detector by name; ``"auto"`` tries MediaPipe then YuNet and raises if neither loads.

    Args:
        kind: one of ``"auto"``, ``"mediapipe"``, ``"yunet"``.
        max_faces: keep at most this many faces per frame, largest first.
    """
    if kind not in DETECTORS:
        raise ValueError(f"unknown detector {kind!r}: expected one of {', '.join(DETECTORS)}")
    if kind == "yunet":
        return YuNetDetector(max_faces=max_faces)
    try:
        return MediaPipeDetector(max_faces=max_faces)
    except (ImportError, RuntimeError, OSError) as exc:
        if kind == "mediapipe":
            raise
        log.warning("MediaPipe face detector unavailable (%s); falling back to YuNet", exc)
    return YuNetDetector(max_faces=max_faces)
