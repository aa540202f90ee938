"""A tiny sub-command runner shared by ``nasfe-cam``, ``nasfe-train`` and ``nasfe-eval``.

Each sub-command is a module exposing ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; the runner turns :class:`~engine.errors.UserError` (and a missing file) into one
line on stderr with exit code 2, and Ctrl-C into exit code 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from engine.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too: keep it short)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_main(prog: str, description: str, modules: Sequence[str], default: str | None = None):
    """Return a ``main(argv=None) -> int`` for a console script made of the given sub-command modules.

    ``default`` names the sub-command run when no arguments are given (else help is printed).
    """

    def main(argv: Sequence[str] | None = None) -> int:
        parser = _Parser(prog=prog, description=description)
        subs = parser.add_subparsers(dest="command", metavar="COMMAND")
        handlers = {}
        for name in modules:
            mod = importlib.import_module(name)
            sp = subs.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
            sp.error = parser.error.__get__(sp)  # type: ignore[method-assign]
            mod.add_arguments(sp)
            handlers[mod.NAME] = mod.run
        argv = list(sys.argv[1:] if argv is None else argv)
        if not argv and default is not None:
            argv = [default]
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        try:
            return int(handlers[args.command](args) or 0)
        except UserError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            print(f"{prog}: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130

    return main
