"""``nasfe-train pretrain``: stage 1, the task encoders and the degradation classifier."""

from __future__ import annotations

import argparse

from training.stages import run_stages
from training.stages.context import add_run_arguments

NAME = "pretrain"
HELP = ("Pretrain the deblur/denoise/low-light encoders on single-degradation faces and the "
        "degradation classifier (BCE). Example: nasfe-train pretrain --config rt --out runs/rt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "time budget of the stage in minutes, summed over resumes")


def run(args: argparse.Namespace) -> int:
    return run_stages(args, ("pretrain",))
