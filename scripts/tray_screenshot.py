"""Screenshots of the tray app on a real X display (run by ``scripts/tray_screenshot.sh``, under Xvfb).

Starts the tray on the bundled sample clip with a throw-away config folder, waits for the preview to
show frames, then saves PNGs of the whole screen (Qt's ``QScreen.grabWindow(0)``: the root window,
so the tray panel is in the picture too): the preview with the tray icon, the open menu, the Mode
and Camera submenus, the enrolment window, the About box, and the fallback control window.

Usage: ``python scripts/tray_screenshot.py OUT_DIR``
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PyQt6.QtCore import QEventLoop, QPoint
from PyQt6.QtGui import QGuiApplication
from PyQt6.QtWidgets import QApplication

from facecam.commands.common import setup_logging
from facecam.tray.app import TrayApp
from facecam.tray.icons import state_icon
from facecam.tray.providers import default_providers

log = logging.getLogger("facecam.tray.screenshot")


def pump(seconds: float, until: Callable[[], bool] = lambda: False) -> bool:
    """Run the Qt event loop for up to ``seconds`` or until ``until()``; returns whether it came true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if until():
            return True
        time.sleep(0.01)
    return until()


def grab(out: Path, name: str) -> None:
    pump(0.4)  # let the X server paint what was just shown
    pixmap = QGuiApplication.primaryScreen().grabWindow(0)
    if pixmap.isNull() or not pixmap.save(str(out / name)):
        raise SystemExit(f"could not grab the screen into {out / name}")
    print(f"saved {out / name} ({pixmap.width()}x{pixmap.height()})", flush=True)


def menu_position(tray: TrayApp) -> QPoint:
    """Below the tray icon when the panel reports where it is, else the screen's top-right corner."""
    screen = QGuiApplication.primaryScreen().geometry()
    icon = tray.tray.geometry() if tray.tray is not None else None
    if icon is not None and icon.isValid() and not icon.isEmpty():
        x = min(icon.left(), screen.right() - tray.menu.sizeHint().width())
        return QPoint(x, icon.bottom() + 2)
    return QPoint(screen.right() - tray.menu.sizeHint().width() - 8, 32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the PNGs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    setup_logging()
    app = QApplication(sys.argv[:1])
    app.setApplicationName("NASFE Cam")
    app.setQuitOnLastWindowClosed(False)
    app.setWindowIcon(state_icon("on"))

    with tempfile.TemporaryDirectory(prefix="nasfe-cam-screens-") as config:
        tray = TrayApp(default_providers(), config=Path(config), camera="sample")
        print(f"system tray available: {tray.tray is not None}", flush=True)
        tray.show()
        tray.preview.move(16, 60)
        tray.preview.resize(960, 380)
        tray.preview_action.setChecked(True)
        if not pump(60, lambda: tray.filter_status is not None and tray.preview.frames_shown > 20):
            raise SystemExit(f"the preview showed no frames within 60 s (status: {tray.status_lines()})")
        pump(1.5)  # a few stats ticks for the overlay
        print("status: " + " | ".join(tray.status_lines()), flush=True)
        grab(args.out, "1_preview_and_tray.png")

        tray.menu.popup(menu_position(tray))
        grab(args.out, "2_menu.png")
        for number, title in ((3, "Mode"), (4, "Camera")):  # each submenu opened beside the menu
            entry = next(a for a in tray.menu.actions() if a.text() == title)
            submenu = entry.menu()
            tray.menu.setActiveAction(entry)
            top_left = tray.menu.geometry().topLeft() + QPoint(0, tray.menu.actionGeometry(entry).top())
            submenu.popup(top_left - QPoint(submenu.sizeHint().width(), 0))
            grab(args.out, f"{number}_menu_{title.lower()}.png")
            submenu.hide()
        tray.menu.hide()

        dialog = tray.open_enrolment()
        dialog.move(1000 - dialog.sizeHint().width(), 120)
        pump(3)
        grab(args.out, "5_remember_my_face.png")
        dialog.close()

        about = tray.show_about()
        about.move(200, 200)
        pump(45, lambda: "running..." not in about.text.toPlainText())
        grab(args.out, "6_about.png")
        about.close()
        tray.preview_action.setChecked(False)
        tray.shutdown()

        window = TrayApp(default_providers(), config=Path(config), camera="sample", tray_available=False)
        window.show()
        window.window.move(40, 60)
        pump(30, lambda: window.filter_status is not None)
        pump(1.0)
        grab(args.out, "7_fallback_window.png")
        window.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
