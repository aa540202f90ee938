"""Small widgets shared by the tray menu and the fallback control window."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QAction, QImage, QPixmap
from PyQt6.QtWidgets import QAbstractButton, QHBoxLayout, QLabel, QSlider, QWidget

__all__ = ["StrengthSlider", "bind_checkable", "bgr_to_pixmap"]


class StrengthSlider(QWidget):
    """``Strength [-----o---] 80%``: a 0-100 % slider.

    ``percent_changed(int)`` is emitted when the user moves it; :meth:`set_percent` updates it quietly.
    """

    percent_changed = pyqtSignal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setSingleStep(5)
        self.slider.setPageStep(10)
        self.slider.setMinimumWidth(140)
        self.slider.setToolTip("How much of the enhancement to blend in: 0% leaves the picture untouched")
        self.value_label = QLabel()
        self.value_label.setMinimumWidth(self.value_label.fontMetrics().horizontalAdvance("100%") + 4)
        self.value_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(28, 4, 12, 4)  # lines up with the menu's text column (Fusion style)
        layout.addWidget(QLabel("Strength"))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.value_label)
        self.slider.valueChanged.connect(self._on_value)
        self._show(self.slider.value())

    def _show(self, percent: int) -> None:
        self.value_label.setText(f"{percent}%")

    def _on_value(self, percent: int) -> None:
        self._show(percent)
        self.percent_changed.emit(percent)

    def set_percent(self, percent: int) -> None:
        """Move the slider without emitting :attr:`percent_changed`."""
        self.slider.blockSignals(True)
        self.slider.setValue(percent)
        self.slider.blockSignals(False)
        self._show(self.slider.value())


def bind_checkable(button: QAbstractButton, action: QAction) -> None:
    """Keep a check box (or any checkable button) and a checkable action in step, both ways."""
    button.setText(action.text().replace("&", ""))
    button.setToolTip(action.toolTip())
    button.setChecked(action.isChecked())
    button.toggled.connect(action.setChecked)  # setChecked is a no-op when equal: no loop
    action.toggled.connect(button.setChecked)
    action.changed.connect(lambda: button.setEnabled(action.isEnabled()))


def bgr_to_pixmap(image_bgr: np.ndarray) -> QPixmap:
    """``(H, W, 3)`` uint8 BGR -> a QPixmap (copied: the array may be freed afterwards)."""
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"unexpected image: {image_bgr.shape} {image_bgr.dtype} != (H, W, 3) uint8")
    image = np.ascontiguousarray(image_bgr)
    h, w = image.shape[:2]
    qimage = QImage(image.data, w, h, image.strides[0], QImage.Format.Format_BGR888)
    return QPixmap.fromImage(qimage.copy())
