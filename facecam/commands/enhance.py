"""``nasfe-cam enhance IN [OUT]``: enhance the faces in an image, a folder of images or a video file."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
from tqdm import tqdm

from engine.errors import UserError
from facecam.capture import open_video
from facecam.commands.common import (
    add_engine_arguments,
    check_identity,
    controls_from_args,
    load_engine,
    setup_logging,
)
from facecam.files import same_file, write_image_atomic
from facecam.pipeline import FramePipeline
from facecam.quiet import native_stderr_silenced
from facecam.sinks import VIDEO_SUFFIXES, VideoFileSink

NAME = "enhance"
HELP = (
    "Enhance the faces in an image, a folder of images or a video. Writes IN_nasfe.EXT (or OUT); never "
    "overwrites without --force and never writes over the input."
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="IN", help="an image, a folder of images or a video")
    parser.add_argument(
        "output", type=Path, nargs="?", metavar="OUT",
        help="where to write (same kind as IN); default: IN with _nasfe added to its name",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_engine_arguments(parser)


def _kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise UserError(
        f"{path}: unsupported file type {suffix!r}: expected an image ({', '.join(IMAGE_SUFFIXES)}), "
        f"a video ({', '.join(VIDEO_SUFFIXES)}) or a folder"
    )


def _default_output(path: Path, kind: str) -> Path:
    if kind == "folder":
        return path.with_name(path.name + "_nasfe")
    return path.with_name(f"{path.stem}_nasfe{path.suffix}")


def _plan(inp: Path, out: Path, kind: str) -> list[tuple[Path, Path]]:
    """(input, output) file pairs; refuses outputs that would write over an input."""
    if same_file(inp, out):
        raise UserError(f"output {out} is the input itself; choose another output")
    if kind != "folder":
        return [(inp, out)]
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    images = sorted(p for p in inp.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UserError(f"{inp}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return [(p, out / p.name) for p in images]


def run(args: argparse.Namespace) -> int:
    setup_logging()
    inp: Path = args.input
    if not inp.exists():
        raise UserError(f"input not found: {inp}")
    kind = _kind(inp)
    out: Path = args.output or _default_output(inp, kind)
    if args.output is not None and kind != "folder" and _kind(out) != kind:
        raise UserError(f"output {out} must be {'an' if kind == 'image' else 'a'} {kind} like the input {inp}")
    pairs = _plan(inp, out, kind)
    existing = [o for _, o in pairs if o.exists()]
    if existing and not args.force:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]}{more} already exists; add --force to overwrite")
    controls = controls_from_args(args)
    enhancer = load_engine(args.backend, args.weights)
    check_identity(enhancer, controls, args.identity)
    with FramePipeline(enhancer, controls=controls) as pipeline:
        if kind == "video":
            frames, faces = _enhance_video(pipeline, inp, out)
            print(f"nasfe-cam: {out}: {frames} frames, faces found in {faces}")
        else:
            written = _enhance_images(pipeline, pairs)
            print(f"nasfe-cam: wrote {written} image(s) to {out}")
    return 0


def _enhance_images(pipeline: FramePipeline, pairs: list[tuple[Path, Path]]) -> int:
    written = 0
    for src, dst in tqdm(pairs, unit="image", desc="enhance", disable=len(pairs) < 2):
        with native_stderr_silenced():  # libpng/libjpeg complain on fd 2 about damaged files
            image = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if image is None:
            if len(pairs) == 1:
                raise UserError(f"{src}: not a readable image")
            print(f"nasfe-cam: skipping {src}: not a readable image")
            continue
        pipeline.reset()  # unrelated photos: no tracking or exposure carried over
        try:
            write_image_atomic(dst, pipeline.process(image, 0.0).image_bgr)
        except OSError as exc:  # disk full, read-only folder: the old file (if any) is left as it was
            raise UserError(f"cannot write {dst}: {exc.strerror or exc}") from None
        written += 1
    return written


def _enhance_video(pipeline: FramePipeline, src: Path, dst: Path) -> tuple[int, int]:
    cap = open_video(str(src))
    with native_stderr_silenced():  # FFmpeg prints its parsing errors on fd 2
        ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise UserError(f"{src}: not a readable video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    frames = with_faces = 0
    try:
        with VideoFileSink(dst, width=frame.shape[1], height=frame.shape[0], fps=fps) as sink, tqdm(
            total=total, unit="frame", desc="enhance"
        ) as bar:
            while ok:
                result = pipeline.process(frame, frames / fps)
                sink.send(result.image_bgr, frame)
                frames += 1
                with_faces += bool(result.faces)
                bar.update()
                ok, frame = cap.read()
    except OSError as exc:  # no writer for this container here, disk full: nothing under dst changes
        raise UserError(f"cannot write {dst}: {exc.strerror or exc}") from None
    finally:
        cap.release()
    return frames, with_faces
