"""``nasfe-train degrade IMAGE -o OUT.png``: apply the paper's synthetic degradations to one photo."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from engine.errors import UserError
from training.degrade import DegradationConfig, degrade
from training.faces import crops_to_tensor, read_rgb, tensor_to_crops, write_rgb

NAME = "degrade"
HELP = (
    "Degrade one image with random blur / noise / low light (all three if none is chosen). "
    "Example: nasfe-train degrade face.jpg -o face_bnl.png --seed 1"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="input photo (any format OpenCV reads); degraded as given, not aligned")
    parser.add_argument("-o", "--output", required=True, help="output image path, e.g. out.png")
    parser.add_argument("--blur", action="store_true", help="random motion or anisotropic Gaussian blur")
    parser.add_argument("--noise", action="store_true", help="Poisson-Gaussian sensor noise on the Bayer mosaic")
    parser.add_argument("--lowlight", action="store_true", help="scale irradiance by r in [0.05, 0.5]")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    if Path(args.output).resolve() == Path(args.image).resolve():
        raise UserError(f"-o {args.output} is the input image; choose another output")
    chosen = (args.blur, args.noise, args.lowlight)
    if not any(chosen):
        chosen = (True, True, True)
    config = DegradationConfig(p_blur=float(chosen[0]), p_noise=float(chosen[1]), p_lowlight=float(chosen[2]))
    x = crops_to_tensor(read_rgb(args.image)[None])
    h, w = x.shape[-2:]
    if min(h, w) <= config.kernel_size:
        raise UserError(f"{args.image}: image is {w}x{h}, expected both sides > {config.kernel_size}")
    y, _, p = degrade(x, config, torch.Generator().manual_seed(args.seed))
    write_rgb(args.output, tensor_to_crops(y)[0])
    applied = []
    if p.blur[0]:
        support = p.kernels[0] > 0
        extent = max(int(support.any(0).sum()), int(support.any(1).sum()))
        applied.append(f"blur (kernel support {extent}px)")
    if p.lowlight[0]:
        applied.append(f"low light r={float(p.r[0]):.3f}")
    if p.noise[0]:
        applied.append(f"noise sigma_s={float(p.sigma_s[0]):.3f} sigma_c={float(p.sigma_c[0]):.3f}")
    print(f"{args.output}: {', '.join(applied)} (gamma {float(p.crf[0]):.2f})")
    return 0
