"""``nasfe-train testsets``: build the paper's Table-4 test sets from the test split."""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

from engine.errors import UserError
from training.testsets import TEST_SETS, TEST_SOURCES, build_testsets, expected_counts

NAME = "testsets"
HELP = (
    "Build Test-B/N/L/BN/BNL (paper Table 4) from split == test faces: PNGs, manifest.csv, kernels.npz. "
    "Example: nasfe-train testsets --out runs/testsets --limit 20 --per-image 8"
)


def _names(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in allowed]
    if not names or bad:
        raise UserError(f"{what}: expected a comma-separated subset of {','.join(allowed)}, got {value!r}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", default="../shared/faces", help="shared faces folder with index.csv (default ../shared/faces)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--limit", type=int, default=100, help="clean images per source (paper: 100; default 100)")
    parser.add_argument(
        "--per-image", type=int, default=None, metavar="K",
        help="keep K random conditions per clean image and set instead of the full Table-4 enumeration",
    )
    parser.add_argument("--seed", type=int, default=0, help="fixes images, kernels, subsampling and noise (default 0)")
    parser.add_argument("--sources", default=",".join(TEST_SOURCES), help="face sources (default celeba,lfw)")
    parser.add_argument("--sets", default=",".join(TEST_SETS), help="which sets (default all five)")
    parser.add_argument("--force", action="store_true", help="write into a folder that already has a manifest")


def run(args: argparse.Namespace) -> int:
    sources = _names(args.sources, ("celeba", "lfw", "glint"), "--sources")
    sets = _names(args.sets, TEST_SETS, "--sets")
    if (Path(args.out) / "manifest.csv").exists() and not args.force:
        raise UserError(f"{args.out} already holds test sets; pass --force to overwrite")
    rows = build_testsets(
        args.faces, args.out, limit=args.limit, seed=args.seed, per_image=args.per_image,
        sources=sources, sets=sets,
    )
    counts = collections.Counter((r.set, r.source) for r in rows)
    clean = {src: len({r.clean.rsplit("/", 1)[1] for r in rows if r.source == src}) for src in sources}
    for src in sources:
        full = expected_counts(clean[src])
        line = ", ".join(f"{s} {counts[s, src]}" + ("" if counts[s, src] == full[s] else f"/{full[s]}") for s in sets)
        print(f"{src}: {clean[src]} clean faces -> {line}")
    print(f"wrote {len(rows)} degraded images, {args.out}/manifest.csv and {args.out}/kernels.npz")
    return 0
