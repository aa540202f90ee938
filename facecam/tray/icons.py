"""The tray's state icons, drawn with QPainter (no image files): a small camera, coloured by state.

* ``on``: green camera with a spark (enhancing);
* ``off``: grey camera struck through (bypassed, strength 0, or starting);
* ``error``: red camera with an exclamation mark in the lens (engine unavailable, camera lost, ...).
"""

from __future__ import annotations

from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

__all__ = ["STATES", "state_color", "draw_state", "state_icon"]

#: Icon states.
STATES: tuple[str, ...] = ("on", "off", "error")
_COLORS = {"on": "#2e9d5b", "off": "#7c8087", "error": "#d13438"}
_SIZES = (16, 22, 24, 32, 48, 64)


def state_color(state: str) -> QColor:
    """The state's colour (also used for the fallback window's status dot)."""
    if state not in _COLORS:
        raise ValueError(f"unknown state {state!r}: expected one of {', '.join(STATES)}")
    return QColor(_COLORS[state])


def draw_state(painter: QPainter, state: str) -> None:
    """Draw the ``state`` glyph in a 64x64 box at the painter's origin (scale the painter for other sizes)."""
    color = state_color(state)
    white = QColor("white")
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(color)
    body = QPainterPath()
    body.addRoundedRect(QRectF(3, 16, 58, 42), 10, 10)
    body.addRoundedRect(QRectF(20, 8, 24, 12), 4, 4)  # viewfinder hump
    painter.drawPath(body.simplified())
    painter.setBrush(white)
    painter.drawEllipse(QPointF(32, 37), 15, 15)
    painter.setBrush(color)
    if state == "error":  # "!" in the lens
        painter.drawRoundedRect(QRectF(29, 26, 6, 14), 3, 3)
        painter.drawEllipse(QPointF(32, 45), 3.4, 3.4)
        return
    painter.drawEllipse(QPointF(32, 37), 8, 8)
    if state == "on":  # a four-point spark on the body's corner
        spark = QPainterPath()
        cx, cy, r, w = 52.0, 10.0, 9.5, 2.6
        spark.moveTo(cx, cy - r)
        for x, y in ((cx + w, cy - w), (cx + r, cy), (cx + w, cy + w), (cx, cy + r),
                     (cx - w, cy + w), (cx - r, cy), (cx - w, cy - w)):
            spark.lineTo(x, y)
        spark.closeSubpath()
        painter.setBrush(QColor("#f4c430"))
        painter.setPen(QPen(QColor("#5a4500"), 1.0))
        painter.drawPath(spark)
    else:  # "off": struck through, with a white halo so the stroke reads on any panel colour
        for pen_color, width in ((white, 9.0), (QColor("#3b3f45"), 5.0)):
            painter.setPen(QPen(pen_color, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
            painter.drawLine(QPointF(8, 60), QPointF(58, 6))


def state_icon(state: str) -> QIcon:
    """A multi-size :class:`QIcon` of the state (needs a QGuiApplication)."""
    icon = QIcon()
    for size in _SIZES:
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.scale(size / 64.0, size / 64.0)
        draw_state(painter, state)
        painter.end()
        icon.addPixmap(pixmap)
    return icon
