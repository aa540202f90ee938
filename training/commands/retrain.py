"""``nasfe-train retrain``: stage 4, the derived network trained with the final loss."""

from __future__ import annotations

import argparse

from training.stages import run_stages
from training.stages.context import add_run_arguments

NAME = "retrain"
HELP = ("Retrain the derived network with L2 + perceptual + identity loss; keeps the best weights by "
        "validation PSNR in runs/NAME/best. Needs derive. Example: nasfe-train retrain --out runs/rt --resume")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "time budget of the stage in minutes, summed over resumes")


def run(args: argparse.Namespace) -> int:
    return run_stages(args, ("retrain",))
