"""The command-line conventions every script and ``python -m fcn_edge.stream`` share.

Sizes are ``HxW`` (rows first, as numpy and ONNX shapes are), shapes are ``NxHxWxC``, and
backends have one name each (:data:`BACKEND_NAMES`). A flag means one thing everywhere.
"""

from __future__ import annotations

import argparse
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


def positive_int(text: str) -> int:
    """A count that must be at least 1 (--threads: 0 would mean "the default" to one backend and an error to another)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value
