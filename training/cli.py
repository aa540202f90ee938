"""``nasfe-train``: offline tools (degradations, test sets, search, training, export)."""

from engine.cli import build_main

# One module per sub-command; add yours here.
COMMANDS: list[str] = [
    "training.commands.all",
    "training.commands.pretrain",
    "training.commands.search",
    "training.commands.derive",
    "training.commands.retrain",
    "training.commands.degrade",
    "training.commands.testsets",
    "training.commands.pack",
    "training.commands.contact_sheet",
    "training.commands.info",
    "training.commands.export",
]

main = build_main("nasfe-train", "NASFE offline training tools.", COMMANDS)
