"""``nasfe-eval``: evaluation (paper tables, face verification)."""

from engine.cli import build_main

COMMANDS: list[str] = [
    "training.commands.verify",
    "training.commands.eval_run",
]

main = build_main("nasfe-eval", "Evaluate NASFE engines and face recognisers.", COMMANDS)
