"""``nasfe-train pack``: a small faces folder (aligned WebP crops) for a size-capped GPU burst."""

from __future__ import annotations

import argparse

from engine.configs import get_config
from training.pack import pack_faces
from training.run_config import DataConfig

NAME = "pack"
HELP = ("Pack aligned train-split crops of random identities as WebP + index.csv, a faces folder that "
        "fits a size-capped copy of the project. Example: nasfe-train pack --out gpu/faces --max-images 3000; "
        "then train with --set data.faces_dir=gpu/faces")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", default=DataConfig.faces_dir, help=f"shared faces folder (default {DataConfig.faces_dir})")
    parser.add_argument("--out", required=True, help="new folder for the pack")
    parser.add_argument("--engine", default="rt", help="network config whose crop size the pack uses (default rt)")
    parser.add_argument("--context", type=float, default=DataConfig.context,
                        help=f"crop side relative to the model crop, as data.context (default {DataConfig.context})")
    parser.add_argument("--max-images", type=int, default=3000, help="at most this many photos (default 3000)")
    parser.add_argument("--per-identity", type=int, default=3, help="at most this many photos per person (default 3)")
    parser.add_argument("--quality", type=int, default=95, help="WebP quality 1-100 (default 95)")
    parser.add_argument("--seed", type=int, default=0, help="fixes which identities are packed (default 0)")


def run(args: argparse.Namespace) -> int:
    records = pack_faces(args.faces, args.out, crop_size=get_config(args.engine).crop_size, context=args.context,
                         max_images=args.max_images, per_identity=args.per_identity, quality=args.quality,
                         seed=args.seed)
    size = sum(r.path.stat().st_size for r in records)
    print(f"packed {len(records)} faces of {len({r.identity for r in records})} people into {args.out} "
          f"({size / 2**20:.1f} MiB)")
    return 0
