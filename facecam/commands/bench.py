"""``nasfe-cam bench``: engine latency per backend, whole-filter throughput, and the memory soak."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from engine.configs import list_configs
from engine.errors import UserError
from facecam.files import atomic_path
from facecam.commands.common import setup_logging

NAME = "bench"
HELP = (
    "Benchmark the engine backends (latency per face at batch 1 and 4) and the whole filter on the "
    "bundled sample clip (fps and added latency at 640x480 and 1280x720); --soak follows memory."
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes as a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected minutes > 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", action="append", metavar="NAME",
        help="backend to benchmark: auto, tensorrt, cuda, openvino, onnxruntime or torch; repeat for "
        "several (default: every backend usable on this machine)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the full report as JSON to OUT")
    parser.add_argument("--weights", type=Path, metavar="FILE", help="engine weights (default: the shipped engine)")
    parser.add_argument("--genotype", type=Path, metavar="FILE", help="genotype of --weights (default: beside it or recorded in it)")
    parser.add_argument(
        "--random", metavar="CONFIG",
        help=f"time a random-weight network of this config ({', '.join(list_configs())}) instead of trained weights",
    )
    parser.add_argument("--frames", type=_positive_int, default=300, metavar="N", help="timed pipeline frames per size (0 skips it; default 300)")
    parser.add_argument("--runs", type=_positive_int, default=50, metavar="N", help="timed engine calls per batch size (default 50)")
    parser.add_argument("--sizes", default="640x480,1280x720", metavar="WxH,...", help="pipeline frame sizes (default 640x480,1280x720)")
    parser.add_argument("--threads", type=_positive_int, metavar="N", help="CPU threads for the engine (default: half the cores)")
    parser.add_argument("--clip", type=Path, metavar="VIDEO", help="video to run the pipeline on (default: the bundled sample clip)")
    parser.add_argument("--soak", type=_minutes, metavar="MINUTES", help="also run the filter this long and report RSS and latency over time")
    parser.add_argument("--soak-size", default="640x480", metavar="WxH", help="frame size of the soak run (default 640x480)")
    parser.add_argument("--soak-plot", type=Path, metavar="PNG", help="plot RSS and latency of the soak run")


def _network(args: argparse.Namespace):
    from engine.runtime import load_network
    from engine.runtime.load import random_network

    if args.random is not None:
        if args.weights is not None:
            raise UserError("--random and --weights exclude each other")
        return random_network(args.random)
    try:
        return load_network(args.weights, args.genotype)
    except UserError as exc:
        if args.weights is None:
            raise UserError(f"{exc}; or time a random-weight network with --random rt") from None
        raise


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.runtime import BACKENDS, backend_status
    from facecam.bench import SAMPLE_CLIP, fit_frame, load_clip, parse_size, plot_soak, run_benchmark, soak, summary_lines

    setup_logging(engine_level=logging.INFO)
    if args.threads == 0:
        raise UserError("--threads must be >= 1")
    if args.runs == 0:
        raise UserError("--runs must be >= 1")
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    soak_size = parse_size(args.soak_size)
    clip = args.clip or SAMPLE_CLIP
    if not clip.is_file():
        raise UserError(f"clip not found: {clip}")
    if args.backend:
        backends = list(dict.fromkeys(args.backend))
        unknown = [b for b in backends if b != "auto" and b not in BACKENDS]
        if unknown:
            raise UserError(f"unknown backend {unknown[0]!r}; choose auto or one of: {', '.join(BACKENDS)}")
    else:
        backends = [name for name, why in backend_status().items() if why is None]
    net = _network(args)
    report = run_benchmark(
        net, backends, sizes=sizes, frames=args.frames, runs=args.runs, threads=args.threads, clip=clip,
    )
    if args.soak is not None:
        from engine.runtime import create_enhancer

        enhancer = create_enhancer(net, backends[0], threads=report["settings"]["threads"])
        frames = [fit_frame(f, soak_size) for f in load_clip(clip)]
        samples = 30
        with tqdm(total=samples, desc=f"soak {args.soak:g} min", unit="sample") as bar:
            report["soak"] = soak(enhancer, frames, args.soak, samples=samples, on_sample=lambda record: bar.update())
        report["soak"].update(backend=enhancer.name, size=f"{soak_size[0]}x{soak_size[1]}")
        if args.soak_plot is not None:
            plot_soak(report["soak"], args.soak_plot)
    for line in summary_lines(report):
        print(line)
    if args.json is not None:
        with atomic_path(args.json) as tmp:  # never a half-written report under the name asked for
            tmp.write_text(json.dumps(report, indent=1) + "\n")
        print(f"nasfe-cam: wrote {args.json}")
    return 0
