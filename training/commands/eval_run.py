"""``nasfe-eval run``: PSNR/SSIM, identification and comparison grids for NASFE and baselines."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from engine.errors import UserError
from training.eval.baselines import BASELINES
from training.eval.methods import (
    IDENTITY_MODES,
    Method,
    ModelSpec,
    baseline_method,
    model_methods,
    parse_model_spec,
)
from training.eval.run import EvalConfig, evaluate, evaluate_real

NAME = "run"
HELP = "Evaluate NASFE checkpoints and classical baselines on the test sets (paper Tables 1-6)."

_EPILOG = """examples:
  nasfe-eval run --testsets runs/testsets --out runs/eval --limit 40 \\
      --genotype runs/search/genotype.json --weights runs/train/fused.safetensors
  nasfe-eval run --testsets runs/testsets --out runs/eval-ablation --sets BN BNL \\
      --model baseline=G0:w0.safetensors --model nasfe=G1:w1.safetensors
  nasfe-eval run --real photos/ --out runs/eval-real --genotype G --weights W
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--testsets", type=Path, metavar="DIR",
                     help="test-set directory written by `nasfe-train testsets` (manifest.csv)")
    src.add_argument("--real", type=Path, metavar="DIR",
                     help="folder of real photos (no ground truth): YuNet-align and draw grid_real.png")
    parser.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR",
                        help="where report.md, results.json and grid_<set>.png go")
    parser.add_argument("--genotype", action="append", default=[], type=Path, metavar="G",
                        help="genotype.json of a trained network (repeatable; pairs with --weights in order)")
    parser.add_argument("--weights", action="append", default=[], type=Path, metavar="W",
                        help="fused weights (.safetensors) of a trained network (repeatable)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=GENOTYPE:WEIGHTS",
                        help="a named network row, e.g. for ablations (repeatable)")
    parser.add_argument("--identity", choices=IDENTITY_MODES, default="refs",
                        help="identity prior for network rows: refs = mean of the person's other clean "
                             "photos (paper's NASFE), none = neutral (paper's 'w/o Iiden'), both = "
                             "one row each (default refs)")
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=list(BASELINES),
                        metavar="NAME", help=f"classical columns (default all: {' '.join(BASELINES)})")
    parser.add_argument("--sets", nargs="+", metavar="SET",
                        help="test sets, e.g. Test-B N BNL (default: all in the manifest)")
    parser.add_argument("--sources", nargs="+", metavar="SOURCE",
                        help="face sources, e.g. celeba lfw (default: all in the manifest)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="clean photos per source (whole identities, seeded order); default all")
    parser.add_argument("--per-image", type=int, default=2, metavar="K",
                        help="degraded versions per clean photo and set (default 2)")
    parser.add_argument("--slow-limit", type=int, default=4, metavar="M",
                        help="images per set and source for slow baselines: BM3D takes 2-9 s a crop "
                             "here (default 4)")
    parser.add_argument("--grid-rows", type=int, default=6, metavar="R",
                        help="faces per comparison grid (default 6)")
    parser.add_argument("--batch-size", type=int, default=8, help="crops per network call (default 8)")
    parser.add_argument("--device", default="cpu",
                        help="torch device for networks and recognisers, e.g. cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every sampling choice (default 0)")
    parser.add_argument("--recogniser", type=Path, metavar="WEIGHTS",
                        help="MobileFaceNet safetensors for identification (default: the one in assets)")
    parser.add_argument("--gallery", choices=("faces", "testset"), default="faces",
                        help="identification gallery and identity references: every split==test "
                             "photo of the source in --faces (default), or only the test set's own "
                             "clean photos (quick; few people then have a second photo)")
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces"), metavar="DIR",
                        help="faces folder with index.csv for --gallery faces (default ../shared/faces)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch and OpenCV (default 1: this machine is shared, "
                             "and two threads on two busy cores ran 15x slower)")
    parser.add_argument("--no-recognition", action="store_true", help="skip face identification")
    parser.add_argument("--detector", type=Path, metavar="ONNX",
                        help="YuNet model for --real (default: assets/models/face_detection_yunet.onnx)")


def _model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    if len(args.genotype) != len(args.weights):
        raise UserError(f"--genotype and --weights pair up: got {len(args.genotype)} genotype(s) and "
                        f"{len(args.weights)} weights file(s)")
    specs = [ModelSpec("NASFE" if len(args.weights) == 1 else f"NASFE-{i + 1}", g, w)
             for i, (g, w) in enumerate(zip(args.genotype, args.weights))]
    specs += [parse_model_spec(text) for text in args.model]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"model names must differ, got {', '.join(names)}")
    return specs


def _check_positive(args: argparse.Namespace) -> None:
    for flag, least in (("limit", 1), ("per_image", 1), ("slow_limit", 1), ("grid_rows", 1),
                        ("batch_size", 1), ("seed", 0), ("threads", 1)):
        value = getattr(args, flag)
        if value is not None and value < least:
            raise UserError(f"--{flag.replace('_', '-')} must be at least {least}, got {value}")


def _methods(args: argparse.Namespace, specs: list[ModelSpec]) -> list[Method]:
    return [baseline_method(BASELINES[name]) for name in dict.fromkeys(args.baselines)] + [
        m for s in specs for m in model_methods(s, args.batch_size, args.identity, args.device)]


def _check_device(name: str) -> None:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")


def run(args: argparse.Namespace) -> int:
    import cv2
    import torch

    _check_positive(args)
    _check_device(args.device)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    specs = _model_specs(args)
    if args.real is not None:
        return _run_real(args, specs)
    from training.eval.testset import SETS, SOURCES, canonical_set, read_samples

    samples = read_samples(args.testsets)
    present_sets = {s.set for s in samples}
    present_sources = {s.source for s in samples}
    wanted = {canonical_set(s) for s in args.sets} if args.sets else present_sets
    sets = tuple(s for s in SETS if s in wanted)
    sources = tuple(sorted(set(args.sources or present_sources),
                           key=lambda s: (SOURCES.index(s) if s in SOURCES else len(SOURCES), s)))
    for s in sorted(wanted):
        if s not in present_sets:
            raise UserError(f"{s} is not in {args.testsets / 'manifest.csv'} "
                            f"(has: {', '.join(sorted(present_sets))})")
    for s in sources:
        if s not in present_sources:
            raise UserError(f"source {s!r} is not in {args.testsets / 'manifest.csv'} "
                            f"(has: {', '.join(sorted(present_sources))})")
    methods = _methods(args, specs)
    factory = None
    if not args.no_recognition:
        from training.eval.recognition_eval import mobilefacenet_embedder

        def factory():
            return mobilefacenet_embedder(args.recogniser, batch_size=32, device=args.device)

    config = EvalConfig(
        testsets=args.testsets, out=args.out, sets=sets, sources=sources, limit=args.limit,
        per_image=args.per_image, slow_limit=args.slow_limit, grid_rows=args.grid_rows,
        seed=args.seed, chunk=args.batch_size, device=args.device,
        gallery_faces=args.faces if args.gallery == "faces" else None,
        notes=tuple(f"Model {s.name}: genotype `{s.genotype}`, weights `{s.weights}`." for s in specs),
    )
    evaluate(config, methods, factory, "MobileFaceNet (ArcFace-trained, 192-D; cosine similarity)")
    print(f"wrote {args.out / 'report.md'}, {args.out / 'results.json'} and grid_<set>.png")
    return 0


def _run_real(args: argparse.Namespace, specs: list[ModelSpec]) -> int:
    from tqdm import tqdm

    from training.eval.real import DEFAULT_YUNET, FaceAligner, list_images

    paths = list_images(args.real)
    if args.limit:
        paths = paths[: args.limit]
    aligner = FaceAligner(args.detector or DEFAULT_YUNET)
    crops, missed = [], []
    for p in tqdm(paths, desc="aligning", unit="photo", dynamic_ncols=True):
        crop = aligner.crop(p)
        if crop is None:
            missed.append(p.name)
        else:
            crops.append(crop)
    blind = [b for b in dict.fromkeys(args.baselines) if not BASELINES[b].oracle]
    methods = [replace(m, label="Input") if m.kind == "input" else m
               for m in (baseline_method(BASELINES[b]) for b in blind)]
    methods += [m for s in specs for m in model_methods(s, args.batch_size, "none", args.device)]
    grids = evaluate_real(crops, methods, args.out, rows_per_grid=args.grid_rows)
    print(f"wrote {', '.join(str(g) for g in grids)} ({len(crops)} faces"
          + (f"; no face found in {len(missed)}: {', '.join(missed)})" if missed else ")"))
    return 0
