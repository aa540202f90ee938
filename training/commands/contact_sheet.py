"""``nasfe-train contact-sheet``: a picture of the test-set degradations on a few test faces."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from engine.align import CROP_SIZE
from engine.errors import UserError
from training.faces import crops_to_tensor, load_aligned, read_index, tensor_to_crops, write_rgb
from training.seeding import derive_seed, make_generator, stream_id
from training.testsets import (
    TEST_SETS,
    TEST_SOURCES,
    Condition,
    choose_clean,
    degrade_conditions,
    table4_conditions,
    table4_kernels,
)

NAME = "contact-sheet"
HELP = (
    "Write a PNG grid: one test face per row, columns clean | B | N | L | BN | BNL (Table-4 settings). "
    "Example: nasfe-train contact-sheet -o runs/sheet.png --n 4"
)

_HEADER = 28


def _describe(cond: Condition, kind: str) -> str:
    parts = []
    if cond.kernel is not None:
        parts.append(kind[0].upper())  # M(otion) or G(aussian)
    if cond.r is not None:
        parts.append(f"r{cond.r:g}")
    if cond.sigma_s is not None:
        parts.append(f"s{cond.sigma_s:g}/{cond.sigma_c:g}")
    return " ".join(parts)


def _label(tile: np.ndarray, text: str, y: int, scale: float) -> None:
    """Draw ``text`` on an RGB tile with a dark outline so it reads on any background."""
    for color, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(tile, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def make_contact_sheet(faces_dir: str | Path, n: int, seed: int, *, scale: int = 2) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB grid of ``n`` test faces (alternating CelebA / LFW) under one random
    Table-4 condition of each set, upscaled ``scale`` times (nearest, so noise stays visible)."""
    if n < 1 or scale < 1:
        raise UserError(f"--n and --scale must be >= 1, got {n} and {scale}")
    records = read_index(faces_dir)
    pools = {src: choose_clean(records, src, n, seed) for src in TEST_SOURCES}
    faces = [pools[TEST_SOURCES[i % 2]][i // 2 % len(pools[TEST_SOURCES[i % 2]])] for i in range(n)]
    bank = table4_kernels(seed)
    conditions = table4_conditions(len(bank))
    rng = np.random.default_rng(derive_seed(seed, stream_id("contact-sheet")))
    side = CROP_SIZE * scale
    rows = []
    for i, rec in enumerate(faces):
        crop = load_aligned(rec)
        tiles = [(crop, rec.identity.split(":", 1)[1][:18])]
        for name in TEST_SETS:
            cond = conditions[name][rng.integers(len(conditions[name]))]
            y = degrade_conditions(crops_to_tensor(crop[None]), [cond], bank, make_generator(seed, stream_id(name), i))
            kind = str(bank.kind[cond.kernel]) if cond.kernel is not None else ""
            tiles.append((tensor_to_crops(y)[0], _describe(cond, kind)))
        row = []
        for img, text in tiles:
            big = cv2.resize(img, (side, side), interpolation=cv2.INTER_NEAREST)
            _label(big, text, side - 8, 0.4 * scale / 2 + 0.1)
            row.append(big)
        rows.append(np.concatenate(row, axis=1))
    header = np.full((_HEADER, side * (1 + len(TEST_SETS)), 3), 255, np.uint8)
    for j, title in enumerate(("clean",) + TEST_SETS):
        cv2.putText(header, title, (j * side + 6, _HEADER - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header] + rows, axis=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", default="../shared/faces", help="shared faces folder with index.csv (default ../shared/faces)")
    parser.add_argument("-o", "--output", required=True, help="output PNG path")
    parser.add_argument("--n", type=int, default=4, help="number of faces (rows; default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--scale", type=int, default=2, help="upscale factor of the 128-px crops (default 2)")


def run(args: argparse.Namespace) -> int:
    sheet = make_contact_sheet(args.faces, args.n, args.seed, scale=args.scale)
    write_rgb(args.output, sheet)
    print(f"wrote {args.output} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0
