"""The preview window: the camera picture before | after enhancement, with fps and latency on top."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QSize, Qt, pyqtSignal
from PyQt6.QtGui import QCloseEvent, QColor, QFont, QPainter, QPixmap
from PyQt6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from facecam.sinks import side_by_side
from facecam.tray.widgets import bgr_to_pixmap

__all__ = ["PreviewWindow", "overlay_text"]


def overlay_text(stats: dict, *, faces: bool = True) -> str:
    """One line from a :meth:`facecam.stats.PipelineStats.snapshot`: fps, processing latency, faces.

    ``faces=False`` leaves the face count out (a bypassed pipeline does not look for faces).
    """
    parts = [f"{stats.get('fps', 0.0):.1f} fps"]
    total = stats.get("latency_ms", {}).get("total")
    if total:
        digits = 1 if total["p95"] < 10 else 0
        parts.append(f"latency {total['p50']:.{digits}f} ms (p95 {total['p95']:.{digits}f})")
    if faces:
        count = int(stats.get("faces", 0))
        parts.append(f"{count} face{'s' if count != 1 else ''}")
    if stats.get("dropped_frames"):
        parts.append(f"{stats['dropped_frames']} dropped")
    return "  ·  ".join(parts)


class PreviewWindow(QWidget):
    """Shows the latest ``before | after`` pair, scaled to the window, with a status overlay.

    ``closed`` is emitted when the user closes the window (the tray unchecks "Show preview").
    """

    closed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("NASFE Cam preview")
        self.image = QLabel("Waiting for the camera...")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(QSize(320, 120))
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.image.setStyleSheet("background: #202124; color: #e8eaed;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image)
        self.resize(960, 380)
        self._line = ""
        self._status = ""
        #: Frames shown so far.
        self.frames_shown = 0

    def set_stats(self, stats: dict, status: str = "", *, faces: bool = True) -> None:
        """Text drawn over the next frames: the stats line (see :func:`overlay_text`) and the filter's state."""
        self._line = overlay_text(stats, faces=faces)
        self._status = status

    def show_pair(self, after_bgr: np.ndarray, before_bgr: np.ndarray) -> None:
        """Show one frame pair (uint8 ``(H, W, 3)`` BGR, same shape)."""
        pixmap = bgr_to_pixmap(side_by_side(before_bgr, after_bgr))
        target = self.image.size()
        if target.width() > 1 and target.height() > 1:
            pixmap = pixmap.scaled(
                target, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        self._draw_overlay(pixmap)
        self.image.setPixmap(pixmap)
        self.frames_shown += 1

    def _draw_overlay(self, pixmap: QPixmap) -> None:
        painter = QPainter(pixmap)
        font = QFont(painter.font())
        font.setPixelSize(max(11, pixmap.height() // 28))
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        pad = metrics.height() // 3
        half = pixmap.width() // 2

        def label(text: str, x: int, y: int) -> None:
            box = metrics.boundingRect(text).adjusted(-pad, -pad, pad, pad)
            box.moveTo(x, y)
            painter.fillRect(box, QColor(0, 0, 0, 150))
            painter.setPen(QColor("white"))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

        label("before", pad, pad)
        label("after", half + pad, pad)
        bottom = pixmap.height() - metrics.height() - 3 * pad
        for text, x in ((self._line, pad), (self._status, half + pad)):
            if text:
                label(text, x, bottom)
        painter.end()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 -- Qt's name
        super().closeEvent(event)
        self.closed.emit()
