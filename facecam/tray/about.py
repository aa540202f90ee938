"""About / doctor: what the tray is running, where its files are, and ``nasfe-cam doctor``'s checks."""

from __future__ import annotations

from importlib import metadata

from PyQt6.QtGui import QFontDatabase
from PyQt6.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QVBoxLayout, QWidget

from facecam.commands import doctor
from facecam.tray.jobs import JobRunner

__all__ = ["AboutDialog", "app_version", "doctor_lines"]


def app_version() -> str:
    """The installed package version, or ``"dev"`` when running from a source tree."""
    try:
        return metadata.version("nasfe-cam")
    except metadata.PackageNotFoundError:
        return "dev"


def doctor_lines(*, check_vcam: bool) -> list[str]:
    """``nasfe-cam doctor`` lines for what the running tray does not already know.

    The camera and engine checks are left out (the tray reports its own, and opening the camera
    again would fight the running filter), as is the virtual camera check while the tray holds one.
    """
    checks = [doctor.check_detector, doctor.check_gpu, doctor.check_tray]
    if check_vcam:
        checks.append(doctor.check_virtual_camera)
    return [check().line() for check in checks]


class AboutDialog(QDialog):
    """Version, current state, file locations; the doctor checks are appended when they finish.

    Args:
        summary: lines describing what runs now and where the settings and reference photos live.
        check_vcam: include the virtual camera check (False while the tray is using one).
    """

    def __init__(self, summary: list[str], *, check_vcam: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About NASFE Cam")
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        title = f"NASFE Cam {app_version()}: real-time face enhancement for video calls"
        self.text.setPlainText("\n".join([title, "", *summary, "", "Checks (nasfe-cam doctor):", "  running..."]))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(720, 360)
        self._jobs = JobRunner("nasfe-cam-doctor", self)
        self._jobs.submit(lambda: doctor_lines(check_vcam=check_vcam), self._on_checks)
        self._jobs.shutdown(timeout_s=0.0)  # the thread ends after the checks

    def _on_checks(self, lines: list[str] | None, error: BaseException | None) -> None:
        text = self.text.toPlainText().removesuffix("  running...")
        result = lines if error is None else [f"checks failed: {type(error).__name__}: {error}"]
        self.text.setPlainText(text + "\n".join(f"  {line}" for line in result or []))
