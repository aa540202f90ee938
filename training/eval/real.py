"""Real photos (no landmarks, no ground truth) -> aligned model crops, via YuNet's five points.

YuNet (``cv2.FaceDetectorYN``, the ONNX model shipped in ``assets/models``) gives the same five
landmarks the dataset index uses, so :mod:`engine.align` cuts exactly the crop the network was
trained on (:func:`training.faces.aligned_matrix`, as for the test sets).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine.align import CROP_SIZE, warp_to_crop
from engine.errors import UserError
from training.faces import aligned_matrix, read_rgb

__all__ = ["DEFAULT_YUNET", "IMAGE_SUFFIXES", "FaceAligner", "list_images"]

#: The detector shipped with the app.
DEFAULT_YUNET = Path(__file__).resolve().parents[2] / "assets" / "models" / "face_detection_yunet.onnx"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (raises :class:`UserError` if none)."""
    if not folder.is_dir():
        raise UserError(f"real-photo folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths


class FaceAligner:
    """Finds the most confident face in a photo and cuts its aligned crop."""

    def __init__(self, model: Path = DEFAULT_YUNET, *, size: int = CROP_SIZE,
                 score_threshold: float = 0.6) -> None:
        if not model.is_file():
            raise UserError(f"YuNet model not found: {model}")
        self._detector = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score_threshold)
        self.size = size

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """Five YuNet points ``(5, 2)`` float64 pixels of the best face in a ``(H, W, 3)`` uint8 RGB
        image (eyes, nose, mouth corners, image-left first), or ``None`` when no face is found."""
        h, w = image.shape[:2]
        self._detector.setInputSize((w, h))
        _, faces = self._detector.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if faces is None or len(faces) == 0:
            return None
        best = faces[int(np.argmax(faces[:, -1]))]
        return best[4:14].astype(np.float64).reshape(5, 2)

    def crop(self, path: Path) -> np.ndarray | None:
        """``(size, size, 3)`` uint8 RGB aligned crop of the best face in the photo at ``path``."""
        image = read_rgb(path)
        points = self.landmarks(image)
        if points is None:
            return None
        m, side = aligned_matrix(points, self.size)
        return warp_to_crop(image, m, side)
