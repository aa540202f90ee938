"""``nasfe-train search``: stage 2, the fusion architecture search (alpha/beta)."""

from __future__ import annotations

import argparse

from training.stages import run_stages
from training.stages.context import add_run_arguments

NAME = "search"
HELP = ("Search the fusion architecture: weights and alpha/beta updated alternately on disjoint halves "
        "of the faces, with a collapse guard. Needs pretrain. Example: nasfe-train search --config rt --out runs/rt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "time budget of the stage in minutes, summed over resumes")


def run(args: argparse.Namespace) -> int:
    return run_stages(args, ("search",))
