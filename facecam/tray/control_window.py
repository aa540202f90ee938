"""The fallback when the desktop has no system tray: a small window with the same controls.

It shows the tray's own actions (Enable, Mode, Camera, Output, Show preview, Remember / Forget my
face, About, Quit) and a strength slider, plus a line saying why it is a window; closing it quits.
"""

from __future__ import annotations

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QAction, QCloseEvent, QIcon
from PyQt6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from facecam.tray.widgets import StrengthSlider, bind_checkable

__all__ = ["ControlWindow"]


def _button(action: QAction) -> QToolButton:
    button = QToolButton()
    button.setDefaultAction(action)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return button


def _menu_button(text: str, menu: QMenu) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setMenu(menu)
    button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    return button


class ControlWindow(QWidget):
    """The tray's controls in a window.

    Args:
        reason: why there is no tray icon (shown at the top).
        enable: the checkable "Enable enhancement" action.
        modes: the exclusive mode actions, in menu order.
        camera_menu, output_menu: the tray's Camera and Output menus.
        actions: Show preview, Remember my face, Forget my face, About, Quit (shown as buttons).

    ``close_requested`` is emitted when the user closes the window (the app quits).
    """

    close_requested = pyqtSignal()

    def __init__(
        self,
        reason: str,
        *,
        enable: QAction,
        modes: list[QAction],
        camera_menu: QMenu,
        output_menu: QMenu,
        actions: list[QAction],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("NASFE Cam")
        self.setMinimumWidth(480)
        self.reason = QLabel(reason)
        self.reason.setWordWrap(True)
        self.reason.setStyleSheet("color: #6b6f76; font-style: italic;")
        self.state_icon = QLabel()
        self.status = QLabel("Starting...")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.hide()
        self.enable = QCheckBox()
        bind_checkable(self.enable, enable)
        self.strength = StrengthSlider()
        self.strength.layout().setContentsMargins(0, 0, 0, 0)

        status_row = QHBoxLayout()
        status_row.addWidget(self.state_icon, 0, Qt.AlignmentFlag.AlignTop)
        status_row.addWidget(self.status, 1)
        mode_row = QHBoxLayout()
        mode_row.addWidget(QLabel("Mode"))
        for action in modes:
            mode_row.addWidget(_button(action))
        source_row = QHBoxLayout()
        source_row.addWidget(_menu_button("Camera", camera_menu))
        source_row.addWidget(_menu_button("Output", output_menu))
        source_row.addStretch(1)
        buttons = QGridLayout()
        for i, action in enumerate(actions):
            buttons.addWidget(_button(action), i // 3, i % 3)

        layout = QVBoxLayout(self)
        layout.addWidget(self.reason)
        layout.addLayout(status_row)
        layout.addWidget(self.message)
        layout.addWidget(self.enable)
        layout.addWidget(self.strength)
        layout.addLayout(mode_row)
        layout.addLayout(source_row)
        layout.addLayout(buttons)
        self._closing_by_app = False

    def set_state(self, icon: QIcon, status: str) -> None:
        """Show the tray state's icon and its status text."""
        self.state_icon.setPixmap(icon.pixmap(32, 32))
        self.status.setText(status)
        self.setWindowIcon(icon)
        self._fit()

    def _fit(self) -> None:
        """Grow to show wrapped text in full (a top-level window does not do it by itself)."""
        self.layout().activate()
        needed = self.layout().totalHeightForWidth(self.width())
        if needed > self.height():
            self.resize(self.width(), needed)

    def show_message(self, text: str, *, error: bool = False) -> None:
        """Show the latest message for the user (what the tray would say in a balloon)."""
        self.message.setStyleSheet(f"color: {'#d13438' if error else 'palette(text)'};")
        self.message.setText(text)
        self.message.show()
        self._fit()

    def close_by_app(self) -> None:
        """Close without asking the app to quit (it is quitting already)."""
        self._closing_by_app = True
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 -- Qt's name
        super().closeEvent(event)
        if not self._closing_by_app:
            self.close_requested.emit()
