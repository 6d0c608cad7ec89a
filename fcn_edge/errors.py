"""User-facing errors.

A mistake a user can fix (bad path, bad flag value, wrong file) is raised as
``FcnEdgeError`` with a one-line message that names the culprit and the fix; the
scripts print it and exit non-zero. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable


class FcnEdgeError(Exception):
    """A problem with the user's input, environment or files, not with the code."""


def run_cli(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap a script's ``main`` so user errors print one line and exit with status 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return int(main(argv) or 0)
        except FcnEdgeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
