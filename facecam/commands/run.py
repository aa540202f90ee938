"""``nasfe-cam run``: the camera filter, webcam (or a file) in, enhanced faces out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from engine.errors import UserError
from facecam.commands.common import (
    add_engine_arguments,
    check_identity,
    controls_from_args,
    load_engine,
    setup_logging,
)
from facecam.files import atomic_path, same_file
from facecam.session import CameraSession, SessionError, SessionOptions
from facecam.simulate import SIMULATIONS

NAME = "run"
HELP = (
    "Run the camera filter: a webcam, /dev/videoN or video file in; the virtual camera, a preview or a "
    "video file out. With no options: the webcam if one opens (else the sample clip, degraded), to the "
    "virtual camera if one opens (else out/nasfe_cam.mp4 and a before|after PNG)."
)


def _frames(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of frames, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input", metavar="{0|/dev/videoN|FILE}",
        help="camera index, V4L2 device or video file (default: webcam 0, else the bundled sample clip)",
    )
    parser.add_argument(
        "--output", metavar="{vcam|preview|FILE.mp4}",
        help="virtual camera, a before|after preview (window, or a PNG without a display) or a video file "
        "(.mp4/.avi/.mkv); default: vcam, else out/nasfe_cam.mp4",
    )
    add_engine_arguments(parser)
    parser.add_argument("--frames", type=_frames, metavar="N", help="stop after N frames (default: run on)")
    parser.add_argument(
        "--simulate", choices=SIMULATIONS, metavar="{" + ",".join(SIMULATIONS) + "}",
        help="degrade the input first with the paper's model: b(lur), n(oise), l(ow light) (demos, tests)",
    )
    parser.add_argument(
        "--stats-json", type=Path, metavar="F", help="at the end, write fps, latency, faces, drops (JSON)"
    )
    parser.add_argument("--loop", action="store_true", help="restart a video file input at its end")
    parser.add_argument("--vcam-device", metavar="DEV", help="a specific virtual camera, e.g. /dev/video10")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output video file")


def run(args: argparse.Namespace) -> int:
    setup_logging()
    if args.stats_json is not None and any(
        same_file(args.stats_json, path) for path in (args.input, args.output) if path and Path(path).exists()
    ):
        raise UserError(f"--stats-json {args.stats_json} would overwrite the input or output video")
    controls = controls_from_args(args)
    enhancer = load_engine(args.backend, args.weights)
    check_identity(enhancer, controls, args.identity)
    options = SessionOptions(
        input=args.input,
        output=args.output,
        simulate=args.simulate,
        loop=True if args.loop else None,
        max_frames=args.frames,
        vcam_device=args.vcam_device,
        overwrite=args.force,
    )
    session = CameraSession(enhancer, options, controls=controls)
    try:
        with session:
            for note in session.notes:
                print(f"nasfe-cam: {note}")
            print(
                f"nasfe-cam: {session.input_description} -> {session.output_description} "
                f"({enhancer.name}); Ctrl-C stops"
            )
            _follow(session)
    except SessionError as exc:
        raise UserError(str(exc)) from None
    finally:
        snapshot = session.stats.snapshot()
        if args.stats_json is not None and session.filter is not None:
            with atomic_path(args.stats_json) as tmp:
                tmp.write_text(json.dumps(snapshot, indent=2) + "\n")
    print(
        f"nasfe-cam: {snapshot['frames_processed']} frames, {snapshot['frames_enhanced']} enhanced, "
        f"{snapshot['dropped_frames']} dropped, {snapshot['enhance_errors']} passed through on errors"
    )
    return 0


def _follow(session: CameraSession) -> None:
    """Wait for the filter to finish, showing progress (frames, fps, faces)."""
    running = session.filter
    assert running is not None
    with tqdm(total=session.expected_frames, unit="frame", desc="nasfe-cam", leave=False) as bar:
        while not running.wait(0.5):
            _update(bar, session)
        _update(bar, session)


def _update(bar: tqdm, session: CameraSession) -> None:
    snap = session.stats.snapshot()
    bar.update(snap["frames_processed"] - bar.n)
    bar.set_postfix(fps=snap["fps"], faces=snap["faces"], refresh=False)
