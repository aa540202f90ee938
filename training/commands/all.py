"""``nasfe-train all``: the whole recipe, pretrain -> search -> derive -> retrain -> export."""

from __future__ import annotations

import argparse

from engine.errors import UserError
from training.stages import STAGES, run_stages
from training.stages.context import add_run_arguments

NAME = "all"
HELP = ("Run every stage: pretrain, search, derive, retrain, export (runs/NAME/export). "
        "Example: nasfe-train all --config smoke --out runs/smoke; continue with --resume")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "time budget of EACH trained stage in minutes, summed over resumes "
                              "(per-stage: --set retrain.max_minutes=600)")
    parser.add_argument("--from", dest="first", choices=STAGES, default=STAGES[0],
                        help="start at this stage (e.g. --resume --from export to re-export the best weights)")
    parser.add_argument("--until", dest="last", choices=STAGES, default=STAGES[-1], help="stop after this stage")


def run(args: argparse.Namespace) -> int:
    a, b = STAGES.index(args.first), STAGES.index(args.last)
    if a > b:
        raise UserError(f"--from {args.first} comes after --until {args.last}")
    return run_stages(args, STAGES[a:b + 1])
