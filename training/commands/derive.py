"""``nasfe-train derive``: stage 3, the genotype from the searched supernet."""

from __future__ import annotations

import argparse

from training.stages import run_stages
from training.stages.context import add_run_arguments

NAME = "derive"
HELP = ("Derive genotype.json from the searched alpha/beta (at most derive.max_skip skip edges per cell) "
        "and plot alpha. Needs search. Example: nasfe-train derive --out runs/rt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "unused by derive (accepted for symmetry)")


def run(args: argparse.Namespace) -> int:
    return run_stages(args, ("derive",))
