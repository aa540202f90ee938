"""The tray application: a state icon and menu (or a fallback window) around the running filter.

:class:`TrayApp` owns the Qt side. It talks to the filter only through

* :class:`~facecam.controls.PipelineControls` (strength, mode, enabled, identity), which the frame
  thread reads once per frame, so a change shows within a frame or two;
* :class:`~facecam.tray.bridge.FrameBridge`, a live sink whose coalesced ``frame_ready`` signal
  hands the newest frame pair to the preview and the enrolment window;
* a :class:`~facecam.tray.jobs.JobRunner` that opens and closes the filter off the Qt thread, so
  the UI never waits on a camera, a detector or the engine.

Failures (engine unavailable, camera not opening or lost, frames passing through on errors) turn
the icon to the error state and show a tray message; they never stop the app. When the desktop has
no system tray, the same actions appear in a small :class:`~facecam.tray.control_window.ControlWindow`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, QTimer
from PyQt6.QtGui import QAction, QActionGroup, QGuiApplication, QIcon
from PyQt6.QtWidgets import QApplication, QMenu, QSystemTrayIcon, QWidgetAction

from facecam.controls import PipelineControls
from facecam.tray.about import AboutDialog
from facecam.tray.bridge import FrameBridge
from facecam.tray.control_window import ControlWindow
from facecam.tray.devices import AUTO, SAMPLE, CameraOption, list_virtual_cameras
from facecam.tray.enrol_dialog import EnrolDialog
from facecam.tray.icons import STATES, state_icon
from facecam.tray.jobs import JobRunner
from facecam.tray.preview import PreviewWindow
from facecam.tray.providers import Providers
from facecam.tray.references import ReferenceStore
from facecam.tray.service import FilterChoice, FilterService, FilterStatus
from facecam.tray.settings import SettingsStore, TraySettings
from facecam.tray.widgets import StrengthSlider

__all__ = ["MODE_LABELS", "TrayApp"]

log = logging.getLogger(__name__)

#: Menu labels of the modes, in menu order (keys of facecam.controls.MODES).
MODE_LABELS: dict[str, str] = {"auto": "Auto", "lowlight": "Low light", "denoise": "Denoise", "deblur": "Deblur"}
_TITLE = "NASFE Cam"
_ERROR_REPEAT_S = 60.0  # repeat a "frames passed through on errors" message at most this often


class TrayApp(QObject):
    """The tray icon, its menu, the preview and enrolment windows, and the running filter.

    Args:
        providers: how to open the engine, cameras, detector, virtual camera and identity encoder.
        config: the config folder (``settings.json`` and the private ``identity/`` set live here).
        camera: a camera setting for this run only (not saved), overriding the saved one.
        tray_available: ``None`` asks Qt (``QSystemTrayIcon.isSystemTrayAvailable``); False forces the
            fallback window; True forces the tray icon (tests: offscreen Qt has no tray).
        parent: Qt parent.

    Call :meth:`show` to start, :meth:`quit` (or :meth:`shutdown` in tests) to stop. Needs a
    ``QApplication``.
    """

    def __init__(
        self,
        providers: Providers,
        *,
        config: Path,
        camera: str | None = None,
        tray_available: bool | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.providers = providers
        self.settings_store = SettingsStore(Path(config) / "settings.json")
        self.references = ReferenceStore(Path(config) / "identity")
        self.settings: TraySettings = self.settings_store.load()
        self._camera_override = camera
        self.controls = PipelineControls(
            strength=self.settings.strength, mode=self.settings.mode, enabled=self.settings.enabled
        )
        self.bridge = FrameBridge(self)
        self.service = FilterService(self.controls, self.bridge, providers)
        self.jobs = JobRunner("nasfe-cam-filter", self)
        #: The last message shown to the user (tray balloon or window line).
        self.last_message = ""
        self._status: FilterStatus | None = None
        self._open_error: str | None = None
        self._opening = False
        self._opening_choice: FilterChoice | None = None
        self._camera_lost = False
        self._errors_seen = 0
        self._errors_told_at = -_ERROR_REPEAT_S
        self._closing = False
        self._shown_state: tuple[str, str] | None = None
        self._icons = {state: state_icon(state) for state in STATES}
        self.enrol_dialog: EnrolDialog | None = None
        self.about_dialog: AboutDialog | None = None

        self._build_actions()
        self.menu = self._build_menu()
        self.preview = PreviewWindow()
        self.preview.setWindowIcon(self._icons["on"])
        self.preview.closed.connect(lambda: self.preview_action.setChecked(False))
        self.bridge.frame_ready.connect(self._on_frame)

        platform = QGuiApplication.platformName()
        if tray_available is None and not QSystemTrayIcon.isSystemTrayAvailable():
            why = f"No system tray on this desktop (Qt platform '{platform}')"
        elif tray_available is False:
            why = "A control window instead of a tray icon was asked for (--window)"
        else:
            why = ""
        self.tray: QSystemTrayIcon | None = None
        self.window: ControlWindow | None = None
        if not why:
            self.tray = QSystemTrayIcon(self._icons["off"], self)
            self.tray.setContextMenu(self.menu)
            self.tray.activated.connect(self._on_tray_activated)
        else:
            report = log.warning if tray_available is None else log.info
            report("%s: showing a control window with the same controls", why)
            reason = f"{why}, so NASFE Cam shows this window. Closing it quits."
            self.window = ControlWindow(
                reason,
                enable=self.enable_action,
                modes=list(self.mode_actions.values()),
                camera_menu=self.camera_menu,
                output_menu=self.output_menu,
                actions=[self.preview_action, self.enrol_action, self.forget_action, self.about_action,
                         self.quit_action],
            )
            self.window.strength.percent_changed.connect(self.set_strength_percent)
            self.window.close_requested.connect(self.quit)

        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(500)
        self._stats_timer.timeout.connect(self._on_tick)
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(300)  # a slider drag writes the file once, after it settles
        self._save_timer.timeout.connect(self._save)
        self._load_identity()
        self._sync_controls()
        self._refresh()

    # -- building ------------------------------------------------------------------------------

    def _build_actions(self) -> None:
        self.status_action = QAction("Starting...", self)
        self.status_action.setEnabled(False)
        self.enable_action = QAction("Enable enhancement", self)
        self.enable_action.setCheckable(True)
        self.enable_action.toggled.connect(self.set_enabled)
        self.mode_group = QActionGroup(self)
        self.mode_group.setExclusive(True)
        self.mode_actions: dict[str, QAction] = {}
        for key, label in MODE_LABELS.items():
            action = QAction(label, self.mode_group)
            action.setCheckable(True)
            action.setData(key)
            self.mode_actions[key] = action
        self.mode_group.triggered.connect(lambda action: self.set_mode(action.data()))
        self.preview_action = QAction("Show preview", self)
        self.preview_action.setCheckable(True)
        self.preview_action.toggled.connect(self._show_preview)
        self.enrol_action = QAction("Remember my face...", self)
        self.enrol_action.setToolTip("Take a few clear photos of you, kept only on this computer")
        self.enrol_action.triggered.connect(self.open_enrolment)
        self.forget_action = QAction("Forget my face", self)
        self.forget_action.setToolTip("Delete your reference photos from this computer")
        self.forget_action.triggered.connect(self.forget_face)
        self.about_action = QAction("About / doctor...", self)
        self.about_action.triggered.connect(self.show_about)
        self.quit_action = QAction("Quit", self)
        self.quit_action.triggered.connect(self.quit)

    def _build_menu(self) -> QMenu:
        menu = QMenu()
        menu.addAction(self.status_action)
        menu.addSeparator()
        menu.addAction(self.enable_action)
        self.strength_slider = StrengthSlider(menu)
        self.strength_slider.percent_changed.connect(self.set_strength_percent)
        strength_action = QWidgetAction(menu)
        strength_action.setDefaultWidget(self.strength_slider)
        menu.addAction(strength_action)
        mode_menu = menu.addMenu("Mode")
        mode_menu.addActions(list(self.mode_actions.values()))
        self.camera_menu = menu.addMenu("Camera")
        self.camera_menu.aboutToShow.connect(self._fill_camera_menu)
        self.output_menu = menu.addMenu("Output")
        self.output_menu.aboutToShow.connect(self._fill_output_menu)
        self._camera_group: QActionGroup | None = None
        self._output_group: QActionGroup | None = None
        self._fill_camera_menu()
        self._fill_output_menu()
        menu.addSeparator()
        menu.addAction(self.preview_action)
        menu.addAction(self.enrol_action)
        menu.addAction(self.forget_action)
        menu.addSeparator()
        menu.addAction(self.about_action)
        menu.addAction(self.quit_action)
        return menu

    def _fill_choices(self, menu: QMenu, old: QActionGroup | None, entries: list[tuple[object, str] | None],
                      current: object) -> QActionGroup:
        """Refill ``menu`` with exclusive checkable entries ``(data, label)`` (``None``: a separator)."""
        menu.clear()
        if old is not None:
            old.deleteLater()
        group = QActionGroup(menu)
        group.setExclusive(True)
        for entry in entries:
            if entry is None:
                menu.addSeparator()
                continue
            data, label = entry
            action = QAction(label, group)
            action.setCheckable(True)
            action.setData(data)
            action.setChecked(data == current)
            menu.addAction(action)
        return group

    def _fill_camera_menu(self) -> None:
        """Cameras listed now (cheap: nothing is opened), the sample clip, and any camera given on the command line."""
        current = self.choice().camera
        options = [CameraOption(AUTO, "Automatic (first camera, else the sample clip)"), None,
                   *self.providers.list_cameras(), None, CameraOption(SAMPLE, "Sample clip (simulated bad light)")]
        if current not in {o.spec for o in options if o is not None}:
            options.append(CameraOption(current, current))
        entries = [None if o is None else (o.spec, o.label) for o in options]
        self._camera_group = self._fill_choices(self.camera_menu, self._camera_group, entries, current)
        self._camera_group.triggered.connect(lambda action: self.set_camera(action.data()))
        self.camera_actions = {a.data(): a for a in self._camera_group.actions()}

    def _fill_output_menu(self) -> None:
        choice = self.choice()
        current = (choice.output, choice.vcam_device if choice.output == "vcam" else None)
        entries: list[tuple[object, str] | None] = [(("vcam", None), "Virtual camera (first free)")]
        entries += [(("vcam", n.path), f"Virtual camera {n.name} ({n.path})") for n in list_virtual_cameras()]
        entries += [None, (("off", None), "None (preview only)")]
        self._output_group = self._fill_choices(self.output_menu, self._output_group, entries, current)
        self._output_group.triggered.connect(lambda action: self.set_output(*action.data()))

    # -- life cycle ----------------------------------------------------------------------------

    def show(self) -> None:
        """Show the tray icon (or the fallback window) and start the filter in the background."""
        if self.tray is not None:
            self.tray.show()
        if self.window is not None:
            self.window.show()
        self._stats_timer.start()
        self._request_open()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Save settings, close every window and stop the filter (waits up to ``timeout_s``)."""
        if self._closing:
            return
        self._closing = True
        self._stats_timer.stop()
        self._save_timer.stop()
        self._save()
        for dialog in (self.enrol_dialog, self.about_dialog, self.preview):
            if dialog is not None:
                dialog.close()
        if self.window is not None:
            self.window.close_by_app()
        if self.tray is not None:
            self.tray.hide()
        self.jobs.submit(self.service.close)
        if not self.jobs.shutdown(timeout_s):
            log.warning("the camera filter did not stop within %.0f s", timeout_s)

    def quit(self) -> None:
        """Stop everything and leave the Qt event loop."""
        self.shutdown()
        QApplication.quit()

    # -- user choices (menu, window, tests) ----------------------------------------------------

    def choice(self) -> FilterChoice:
        """What the filter should run now (the camera given on the command line wins for this run)."""
        s = self.settings
        return FilterChoice(camera=self._camera_override or s.camera, output=s.output, vcam_device=s.vcam_device)

    def _change(self, **changes: object) -> None:
        self.settings = replace(self.settings, **changes)
        self._save_timer.start()
        self._sync_controls()
        self._refresh()

    def set_enabled(self, enabled: bool) -> None:
        """Switch enhancement on or off (off: frames pass through untouched)."""
        self.controls.enabled = enabled
        self._change(enabled=bool(enabled))

    def set_strength_percent(self, percent: int) -> None:
        """Set the strength, 0-100 %."""
        self.controls.strength = percent / 100.0
        self._change(strength=percent / 100.0)

    def set_mode(self, mode: str) -> None:
        """Set the mode, a key of :data:`MODE_LABELS`."""
        self.controls.mode = mode
        self._change(mode=mode)

    def set_camera(self, camera: str) -> None:
        """Switch to another camera setting (saved) and reopen the filter."""
        self._camera_override = None
        self._change(camera=camera)
        self._fill_camera_menu()
        self._request_open()

    def set_output(self, output: str, vcam_device: str | None = None) -> None:
        """``"vcam"`` (optionally a specific device) or ``"off"`` (preview only); saved; reopens the filter."""
        self._change(output=output, vcam_device=vcam_device)
        self._fill_output_menu()
        self._request_open()

    def _show_preview(self, show: bool) -> None:
        if show:
            self.preview.show()
            self.preview.raise_()
        else:
            self.preview.hide()

    def open_enrolment(self) -> EnrolDialog:
        """Open "Remember my face" (or bring it forward)."""
        if self.enrol_dialog is None or not self.enrol_dialog.isVisible():
            self.enrol_dialog = EnrolDialog(self.providers, self.references)
            self.enrol_dialog.enrolled.connect(self._on_enrolled)
            self.enrol_dialog.failed.connect(lambda message: self.notify(message, error=True))
        self.enrol_dialog.show()
        self.enrol_dialog.raise_()
        return self.enrol_dialog

    def forget_face(self) -> None:
        """Delete the reference photos and prior from this computer and stop using them."""
        deleted = self.references.forget()
        self.controls.identity = None
        self._sync_controls()
        self.notify(f"Your face is forgotten: {len(deleted)} file(s) deleted from {self.references.folder}.")

    def show_about(self) -> AboutDialog:
        """Version, state, file locations and the doctor checks."""
        status = self._status
        engine = "not loaded yet"
        if status is not None:
            engine = status.engine or f"unavailable ({status.engine_error})"
        photos = self.references.photo_count()
        face = f"{photos} reference photos in {self.references.folder} (only you can read them)"
        summary = [
            f"Now:        {self.status_lines()[0]}",
            f"Camera:     {status.input if status else self.choice().camera}",
            f"Output:     {status.output if status else self.choice().output}",
            f"Engine:     {engine}",
            f"Settings:   {self.settings_store.path}",
            f"Your face:  {face if photos else 'not remembered'}",
        ]
        holding_vcam = status is not None and status.output.startswith("virtual camera")
        self.about_dialog = AboutDialog(summary, check_vcam=not holding_vcam)
        self.about_dialog.show()
        return self.about_dialog

    # -- state ---------------------------------------------------------------------------------

    @property
    def filter_status(self) -> FilterStatus | None:
        """What the filter runs (camera, output, engine), once it has opened; ``None`` before or after a failure."""
        return self._status

    @property
    def state(self) -> str:
        """``"error"``, ``"off"`` (bypassed, strength 0 or starting) or ``"on"``."""
        if self._open_error or self._camera_lost or (self._status is not None and self._status.engine_error):
            return "error"
        if self._status is None or not self.controls.enabled or self.controls.strength == 0.0:
            return "off"
        return "on"

    def status_lines(self) -> list[str]:
        """The state in words: a short headline, then what runs, then why (for an error)."""
        settings = self.controls.snapshot()
        if self._open_error:
            return ["Camera did not open", self._open_error]
        if self._status is None:
            return ["Starting..."]
        running = f"{self._status.input} -> {self._status.output}"
        if self._status.engine_error:
            return ["Engine unavailable: no enhancement", running, f"Why: {self._status.engine_error}"]
        if self._camera_lost:
            headline = "Camera lost: reconnecting..."
        elif not settings.enabled:
            headline = "Off: frames pass through untouched"
        elif settings.strength == 0.0:
            headline = "Strength 0%: frames pass through untouched"
        else:
            headline = f"On: {MODE_LABELS[settings.mode]}, {settings.strength:.0%}"
        lines = [headline, running]
        if settings.identity is not None:
            lines.append("Your face is remembered")
        return lines

    def _refresh(self) -> None:
        """Bring the icon, tooltip, status line and window up to date (only when something changed)."""
        state, lines = self.state, self.status_lines()
        text = "\n".join(lines)
        if (state, text) == self._shown_state:
            return
        self._shown_state = (state, text)
        icon: QIcon = self._icons[state]
        self.status_action.setText(lines[0])
        if self.tray is not None:
            self.tray.setIcon(icon)
            self.tray.setToolTip(f"{_TITLE}\n{text}")
        if self.window is not None:
            self.window.set_state(icon, text)

    def _sync_controls(self) -> None:
        """Make every widget show the current settings (without feeding changes back)."""
        s = self.controls.snapshot()
        self.enable_action.setChecked(s.enabled)
        percent = int(round(s.strength * 100))
        self.strength_slider.set_percent(percent)
        if self.window is not None:
            self.window.strength.set_percent(percent)
        self.mode_actions[s.mode].setChecked(True)
        self.forget_action.setEnabled(self.references.exists())

    def notify(self, message: str, *, error: bool = False) -> None:
        """Tell the user something: a tray balloon, or the fallback window's status (and the log)."""
        (log.warning if error else log.info)("%s", message)
        self.last_message = message
        if self.tray is not None:
            icon = QSystemTrayIcon.MessageIcon.Critical if error else QSystemTrayIcon.MessageIcon.Information
            self.tray.showMessage(_TITLE, message, icon, 8000)
        elif self.window is not None:
            self.window.show_message(message, error=error)

    def _save(self) -> None:
        try:
            self.settings_store.save(self.settings)
        except OSError as exc:
            self.notify(f"cannot save settings to {self.settings_store.path}: {exc}", error=True)

    def _load_identity(self) -> None:
        try:
            self.controls.identity = self.references.load_prior()
        except (OSError, ValueError) as exc:
            self.notify(f"your reference photos cannot be read ({exc}); use Forget my face, then Remember my face",
                        error=True)

    # -- filter --------------------------------------------------------------------------------

    def _request_open(self) -> None:
        """(Re)open the filter with :meth:`choice` on the job thread; repeated requests collapse to the last."""
        if self._opening or self._closing:
            return  # _on_opened reopens if the choice changed meanwhile
        self._opening = True
        choice = self._opening_choice = self.choice()
        self.jobs.submit(lambda: (choice, self.service.open(choice)), self._on_opened)

    def _on_opened(self, result: tuple[FilterChoice, FilterStatus] | None, error: BaseException | None) -> None:
        self._opening = False
        if self._closing:
            return
        self._camera_lost = False
        if error is not None:
            self._status, self._open_error = None, str(error) or type(error).__name__
            self.notify(f"Camera did not open: {self._open_error}", error=True)
        else:
            _, status = result  # type: ignore[misc]
            self._status, self._open_error = status, None
            self._errors_seen = 0
            for note in status.notes:
                self.notify(note)
            if status.engine_error:
                self.notify("Engine unavailable: the camera runs without enhancement.", error=True)
        if self.choice() != self._opening_choice:  # the user picked again while this one opened
            self._request_open()
        self._refresh()

    def _on_frame(self) -> None:
        """The newest frame pair goes to the windows that are open."""
        pair = self.bridge.take()
        if pair is None or self._closing:
            return
        after, before = pair
        if self.preview.isVisible():
            self.preview.show_pair(after, before)
        if self.enrol_dialog is not None and self.enrol_dialog.isVisible():
            self.enrol_dialog.offer(before)

    def _on_tick(self) -> None:
        """Twice a second: stats to the preview overlay; camera loss and frame errors to the user."""
        if self._status is None or self._closing:
            return
        snap = self.service.stats.snapshot()
        lost = not snap["source_connected"]
        if lost and not self._camera_lost:
            self.notify("Camera lost: reconnecting...", error=True)
        self._camera_lost = lost
        errors = snap["enhance_errors"]
        now = time.monotonic()
        if errors > self._errors_seen and now - self._errors_told_at >= _ERROR_REPEAT_S:
            self.notify(f"{errors - self._errors_seen} frame(s) passed through unenhanced after engine errors "
                        "(details in the log)", error=True)
            self._errors_told_at = now
        self._errors_seen = errors
        self.preview.set_stats(snap, self.status_lines()[0], faces=self.state == "on")
        self._refresh()

    def _on_enrolled(self, prior: np.ndarray) -> None:
        try:
            self.controls.identity = prior
        except ValueError as exc:
            self.notify(f"the new identity prior is unusable: {exc}", error=True)
            return
        self._sync_controls()
        self._refresh()
        self.notify(f"Your face is remembered ({self.references.photo_count()} photos, kept only in "
                    f"{self.references.folder}).")

    def _on_tray_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:  # a left click toggles the preview
            self.preview_action.toggle()
