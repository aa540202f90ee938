"""Which cameras the tray offers: a cheap listing, no device is opened.

On Linux the V4L2 nodes are read from sysfs (``/sys/class/video4linux``): a webcam's capture node
has ``index`` 0 (its other nodes carry metadata), and v4l2loopback devices sit under
``/sys/devices/virtual``; those are outputs (virtual cameras), not inputs. Elsewhere the first few
camera indices are offered unprobed: opening one can take seconds, and a choice that fails to open
is reported when chosen.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SAMPLE", "AUTO", "CameraOption", "VideoNode", "video_nodes", "list_cameras", "list_virtual_cameras"]

#: Camera setting for the bundled sample clip (degraded by the simulator, looping).
SAMPLE = "sample"
#: Camera setting for "the first camera, else the sample clip".
AUTO = "auto"
_SYSFS = Path("/sys/class/video4linux")
_UNPROBED_INDICES = 3


@dataclass(frozen=True)
class CameraOption:
    """One entry of the Camera menu: the setting value and its label."""

    spec: str
    label: str


@dataclass(frozen=True)
class VideoNode:
    """A V4L2 device node.

    Attributes:
        path: ``/dev/videoN``.
        name: the driver's card name (``"Integrated Camera"``, ``"NASFE Cam"``).
        index: the node's index within its device (0 = the main capture node).
        virtual: True for v4l2loopback (virtual camera) devices.
    """

    path: str
    name: str
    index: int
    virtual: bool


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def video_nodes(sysfs: Path = _SYSFS) -> list[VideoNode]:
    """Every V4L2 node listed in ``sysfs``, by number; empty where there is none (or not on Linux)."""
    nodes = []
    for node in sysfs.glob("video*"):
        suffix = node.name.removeprefix("video")
        if not suffix.isdigit():
            continue
        index = _read(node / "index", "0")
        nodes.append(
            VideoNode(
                path=f"/dev/{node.name}",
                name=_read(node / "name") or node.name,
                index=int(index) if index.isdigit() else 0,
                virtual="/virtual/" in str(node.resolve()),
            )
        )
    return sorted(nodes, key=lambda n: int(n.path.removeprefix("/dev/video")))


def list_cameras(sysfs: Path = _SYSFS) -> list[CameraOption]:
    """Real cameras to offer as inputs (virtual cameras excluded), without opening any."""
    if sys.platform.startswith("linux"):
        return [
            CameraOption(n.path, f"{n.name} ({n.path})") for n in video_nodes(sysfs) if n.index == 0 and not n.virtual
        ]
    return [CameraOption(str(i), f"Camera {i}") for i in range(_UNPROBED_INDICES)]


def list_virtual_cameras(sysfs: Path = _SYSFS) -> list[VideoNode]:
    """v4l2loopback devices (Linux); empty elsewhere, where pyvirtualcam picks OBS / Unity Capture itself."""
    return [n for n in video_nodes(sysfs) if n.virtual]
