"""The command-line conventions every script and ``python -m fcn_edge.stream`` share.

Sizes are ``HxW`` (rows first, as numpy and ONNX shapes are), shapes are ``NxHxWxC``, and
backends have one name each (:data:`BACKEND_NAMES`). A flag means one thing everywhere.
"""

from __future__ import annotations

import argparse
import copy
import math

def size_hw(text: str, minimum: int = 1, maximum: int = 8192) -> tuple[int, int]:
    """'256x512' -> (256, 512), as (H, W); beyond ``maximum`` a typo, which would exhaust memory, not a size."""
    try:
        h, w = (int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size HxW like 256x512") from None
    if min(h, w) < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} is too small: use at least {minimum} px per side")
    if max(h, w) > maximum:
        raise argparse.ArgumentTypeError(f"{text!r} is too large: use at most {maximum} px per side")
    return h, w


def model_size(text: str) -> tuple[int, int]:
    """A size a model runs at: one stride (32 px) to 4096 px per side (a 4K frame; a model's activations are
    tens of times the frame)."""
    return size_hw(text, minimum=32, maximum=4096)


def shape(text: str) -> tuple[int, ...]:
    """'1x256x512x3' -> (1, 256, 512, 3)."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1x256x512x3") from None
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape of 4 positive sizes like 1x256x512x3")
    return dims


def finite_float(text: str) -> float:
    """A float flag that must be a real number: nan and inf are refused (a budget of nan passes every check)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number: give a value like 1.5")
    return value


def nonempty(text: str) -> str:
    """A name, path, URL or pipeline that cannot be empty: an unset variable ($CAM_URL) is a mistake, not a choice."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty value: give one (is the shell variable you meant set?)")
    return text


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the docstring's layout and shows every flag's default, with or without help text."""

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and _shows_default(action):
            action = copy.copy(action)
            action.help = _NO_HELP  # argparse expands only a help with text in it
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").replace(_NO_HELP, "").strip()
        if not _shows_default(action) or "%(default)" in text or "(default" in text or "default:" in text:
            return text
        default = action.default
        if isinstance(default, tuple):  # sizes HxW, scales a,b
            shown = ("x" if len(default) == 2 and all(isinstance(v, int) for v in default) else ",").join(map(str, default))
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})".lstrip()


_NO_HELP = "\0"


def _shows_default(action: argparse.Action) -> bool:
    return bool(action.option_strings) and action.default not in (None, False, argparse.SUPPRESS)
