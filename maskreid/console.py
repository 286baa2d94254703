"""How the command line and the stage scripts report a user's error: one line on stderr, exit status 1, never a
traceback (the message names the file, the field and the expected form)."""

from __future__ import annotations

import sys


def report_error(message: object) -> int:
    """Print `error: <message>` on stderr; return the exit status (1) for the caller to return or exit with."""
    print(f"error: {message}", file=sys.stderr)
    return 1
