"""``nasfe-cam``: the camera filter, its tray app and tools."""

from engine.cli import build_main

COMMANDS: list[str] = [
    "facecam.commands.run",
    "facecam.commands.enhance",
    "facecam.commands.doctor",
    "facecam.commands.bench",
    "facecam.commands.tray",
]

main = build_main("nasfe-cam", "NASFE Cam: real-time face enhancement for video calls.", COMMANDS, default="tray")
