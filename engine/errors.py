"""Errors that reach the user as one line (CLI exit code 2), never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a wrong path, an unreadable file, a mismatched weights file.

    The message is shown as-is on one line; say what was expected and what was found.
    """
