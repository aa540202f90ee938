"""``nasfe-cam tray`` (the default command): the desktop tray app around the camera filter."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.errors import UserError
from facecam.capture import is_live, parse_source
from facecam.commands.common import add_backend_arguments, setup_logging
from facecam.sinks import has_display
from facecam.tray.devices import AUTO, SAMPLE

log = logging.getLogger("facecam.tray")

NAME = "tray"
HELP = (
    "Start the tray app (what `nasfe-cam` alone runs): an icon whose menu switches enhancement on/off and "
    "sets strength, mode, camera and output, shows a before|after preview, and remembers your face. "
    "Where the desktop has no tray, a small window with the same controls opens instead."
)


def _camera(text: str) -> str:
    if text in (AUTO, SAMPLE) or is_live(parse_source(text)) or Path(text).is_file():
        return text
    raise argparse.ArgumentTypeError(
        f"expected auto, sample, a camera index, /dev/videoN or an existing video file, got {text!r}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--camera", type=_camera, metavar="{auto|sample|0|/dev/videoN|FILE}",
        help="camera for this run only, not saved (default: the one chosen last time in the menu, else auto: "
        "the first camera, else the bundled sample clip with simulated bad light)",
    )
    parser.add_argument(
        "--config-dir", type=Path, metavar="DIR",
        help="where settings.json and your private reference photos (identity/) live "
        "(default: $XDG_CONFIG_HOME/nasfe-cam or ~/.config/nasfe-cam)",
    )
    parser.add_argument("--preview", action="store_true", help="open the before|after preview window at start")
    parser.add_argument("--window", action="store_true", help="use the control window even if a system tray exists")
    add_backend_arguments(parser)


def _probe_qt() -> None:
    """Start Qt's display plugin in a child process first: when it cannot (no X server, a missing xcb
    library), Qt aborts the whole process with a core dump; this turns that into a one-line error."""
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal")):
        return
    code = "from PyQt6.QtGui import QGuiApplication; QGuiApplication(['probe'])"
    try:
        probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise UserError("Qt did not start within 60 s (is the display responding?)") from None
    if probe.returncode != 0:
        lines = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
        telling = [line for line in lines if "needed" in line or "could not" in line.lower()]
        hint = (telling or lines or ["no message"])[0]
        raise UserError(f"Qt cannot open the display ({hint}); `nasfe-cam doctor` checks the setup")


def run(args: argparse.Namespace) -> int:
    setup_logging()
    if not has_display() and not os.environ.get("QT_QPA_PLATFORM"):
        raise UserError(
            "no display: the tray app needs a desktop session (DISPLAY or WAYLAND_DISPLAY); "
            "without one use `nasfe-cam run`"
        )
    if args.weights is not None and not args.weights.is_file():
        raise UserError(f"weights file not found: {args.weights}")
    try:
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication
    except ImportError as exc:
        raise UserError(f"PyQt6 is not available ({exc}); reinstall with `make install`") from None
    _probe_qt()

    from facecam.tray.app import TrayApp
    from facecam.tray.icons import state_icon
    from facecam.tray.providers import default_providers
    from facecam.tray.settings import config_dir

    app = QApplication.instance() or QApplication(["nasfe-cam"])
    app.setApplicationName("NASFE Cam")
    app.setDesktopFileName("nasfe-cam")
    app.setQuitOnLastWindowClosed(False)  # the tray (or the control window) decides when to quit
    app.setWindowIcon(state_icon("on"))
    tray = TrayApp(
        default_providers(backend=args.backend, weights=args.weights),
        config=args.config_dir or config_dir(),
        camera=args.camera,
        tray_available=False if args.window else None,
    )
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C / kill quit cleanly, from the event loop
        signal.signal(signum, lambda *_: QTimer.singleShot(0, tray.quit))
    wake = QTimer()  # Python runs signal handlers only between bytecodes: let it in now and then
    wake.timeout.connect(lambda: None)
    wake.start(250)

    def report(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
        # PyQt aborts on an exception escaping a slot unless sys.excepthook is replaced: log it, tell
        # the user, keep running
        log.error("unexpected error", exc_info=(exc_type, exc, tb))  # type: ignore[arg-type]
        tray.notify(f"Unexpected error: {exc_type.__name__}: {exc} (details in the log)", error=True)

    previous_hook, sys.excepthook = sys.excepthook, report
    tray.show()
    if args.preview:
        tray.preview_action.setChecked(True)
    try:
        return int(app.exec())
    finally:
        tray.shutdown()
        sys.excepthook = previous_hook
