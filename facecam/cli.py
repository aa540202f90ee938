"""``nasfe-cam``: the camera filter, its tray app and tools."""

from engine.cli import build_main

COMMANDS: list[str] = [
]

main = build_main("nasfe-cam", "NASFE Cam: real-time face enhancement for video calls.", COMMANDS)
