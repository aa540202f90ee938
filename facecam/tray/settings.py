"""The tray's saved choices: camera, strength, mode, on/off, output, in a small JSON file.

The file lives in the user's config folder (:func:`config_dir`), is rewritten atomically, and a
missing, corrupt or partly invalid file never stops the app: bad values fall back to the defaults
with one log line each.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from facecam.controls import MODES
from facecam.files import atomic_path

__all__ = ["APP_DIR_NAME", "OUTPUTS", "config_dir", "ensure_private_dir", "TraySettings", "SettingsStore"]

log = logging.getLogger(__name__)

#: Folder name under the config root (``~/.config/nasfe-cam``).
APP_DIR_NAME = "nasfe-cam"
#: Where processed frames go besides the preview: the virtual camera, or nowhere (preview only).
OUTPUTS: tuple[str, ...] = ("vcam", "off")


def config_dir() -> Path:
    """The user's config folder for the app: ``$XDG_CONFIG_HOME/nasfe-cam``, else ``~/.config/nasfe-cam``."""
    root = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(root) / APP_DIR_NAME


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` and make it ``0700``: only the user may list or enter it.

    Missing parents are created ``0700`` too (as the XDG spec asks; ``mkdir -p`` would leave e.g. a new
    ``nasfe-cam/`` above ``identity/`` world-readable); existing parents are left as they are.
    """
    for folder in reversed([path, *path.parents]):
        if not folder.exists():
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    os.chmod(path, 0o700)
    return path


@dataclass(frozen=True)
class TraySettings:
    """What the user chose last time.

    Attributes:
        camera: ``"auto"`` (first camera, else the sample clip), ``"sample"`` (the bundled clip, degraded),
            a camera index (``"0"``), a device (``/dev/video2``) or a video file path.
        strength: 0 (untouched) to 1 (full enhancement).
        mode: a key of :data:`facecam.controls.MODES`.
        enabled: the Enable enhancement switch.
        output: one of :data:`OUTPUTS`.
        vcam_device: a specific virtual camera (``/dev/video10``) or ``None`` for the first free one.
    """

    camera: str = "auto"
    strength: float = 1.0
    mode: str = "auto"
    enabled: bool = True
    output: str = "vcam"
    vcam_device: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.camera, str) or not self.camera.strip():
            raise ValueError(f"camera must be a non-empty string, got {self.camera!r}")
        if isinstance(self.strength, bool) or not isinstance(self.strength, (int, float)):
            raise ValueError(f"strength must be a number in [0, 1], got {self.strength!r}")
        if not 0.0 <= float(self.strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {self.strength}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be true or false, got {self.enabled!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"unknown output {self.output!r}: expected one of {', '.join(OUTPUTS)}")
        if self.vcam_device is not None and not isinstance(self.vcam_device, str):
            raise ValueError(f"vcam_device must be a device path or null, got {self.vcam_device!r}")


class SettingsStore:
    """Reads and writes :class:`TraySettings` as JSON.

    Args:
        path: the settings file, e.g. ``config_dir() / "settings.json"`` (tests pass a temporary one).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> TraySettings:
        """The saved settings; defaults for a missing file, and per field for a missing or bad value."""
        if not self.path.is_file():
            return TraySettings()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("ignoring unreadable settings file %s: %s", self.path, exc)
            return TraySettings()
        if not isinstance(data, dict):
            log.warning("ignoring settings file %s: expected a JSON object", self.path)
            return TraySettings()
        settings = TraySettings()
        for f in fields(TraySettings):  # one field at a time, so one bad value costs only itself
            if f.name not in data:
                continue
            try:
                settings = replace(settings, **{f.name: data[f.name]})
            except ValueError as exc:
                log.warning("settings file %s: %s; using %r", self.path, exc, getattr(settings, f.name))
        return settings

    def save(self, settings: TraySettings) -> None:
        """Write ``settings`` atomically (the folder is created private if missing)."""
        ensure_private_dir(self.path.parent)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(asdict(settings), indent=2) + "\n", encoding="utf-8")
