"""User-facing errors.

A mistake a user can fix (bad path, bad flag value, wrong file) is raised as
``FcnEdgeError`` with a one-line message that names the culprit and the fix; the
scripts print it and exit non-zero. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import importlib.util
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


TRAIN_EXTRA = "pip install torch==2.13.0 && pip install 'fcn_edge[train]' (a CPU torch first; on a GPU machine the torch build that matches its CUDA)"


def require_torch(what: str, instead: str = "") -> None:
    """Raise one line naming the [train] extra when torch is not installed (the deploy core has none)."""
    if importlib.util.find_spec("torch") is None:
        raise FcnEdgeError(f"{what} needs PyTorch, which this install lacks: {TRAIN_EXTRA}{instead}")


def exit_without_torch(script: str) -> None:
    """For scripts that import torch at the top: one ``error:`` line and exit status 2, before the import fails."""
    try:
        require_torch(script)
    except FcnEdgeError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
