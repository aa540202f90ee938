"""``nasfe-eval``: evaluation (paper tables, face verification)."""

from engine.cli import build_main

COMMANDS: list[str] = [
]

main = build_main("nasfe-eval", "Evaluate NASFE engines and face recognisers.", COMMANDS)
