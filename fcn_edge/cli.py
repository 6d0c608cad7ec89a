"""The installed ``fcn-edge`` command, and the flag conventions all its subcommands share.

``fcn-edge <command> ...`` runs the ``main`` of one stage (:data:`COMMANDS`); the stage's module is
imported only when its command runs, so ``fcn-edge stream`` on a deploy box without torch never
touches the training side. Sizes are ``HxW`` (rows first, as numpy and ONNX shapes are), shapes are
``NxHxWxC``. A flag means one thing everywhere.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

PROG = "fcn-edge"


@dataclass(frozen=True)
class Command:
    """One subcommand: the module whose ``main(argv)`` runs it, what it does, whether it needs torch."""

    module: str
    summary: str
    needs_torch: bool = False


# In pipeline order: what `fcn-edge --help` lists.
COMMANDS: dict[str, Command] = {
    "train": Command("fcn_edge.train.__main__", "train an FCN on a dataset, write a checkpoint", needs_torch=True),
    "evaluate": Command(
        "fcn_edge.train.evaluate", "mIoU and boundary F-score of a checkpoint on a dataset split", needs_torch=True
    ),
    "convert": Command("fcn_edge.train.convert", "rewrite a checkpoint's transposed convs as resize+conv", needs_torch=True),
    "export": Command("fcn_edge.export.__main__", "export a checkpoint to a verified ONNX model", needs_torch=True),
    "checkerboard": Command(
        "fcn_edge.export.checkerboard_report", "measure checkerboard artifacts of decoders and checkpoints", needs_torch=True
    ),
    "calibration-set": Command("fcn_edge.quantize.calibration_set", "write the synthetic INT8 calibration frames"),
    "build": Command("fcn_edge.compile.__main__", "build a verified INT8/FP16/BF16/FP32 artifact for this machine"),
    "stream": Command("fcn_edge.stream.__main__", "segment a camera, video, folder or network stream live"),
    "bench": Command("fcn_edge.bench.__main__", "latency and accuracy of every precision and backend here", needs_torch=True),
    "doctor": Command("fcn_edge.doctor", "what this machine can run: GPU, TensorRT, CUDA bindings, CPU runtimes"),
    "compat": Command("fcn_edge.backends.tensorrt.compat", "which TensorRT version features this install has"),
}


def command_line(name: str) -> str:
    """How a message names a subcommand: the installed command, which every install has."""
    return f"{PROG} {name}"


def _overview() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train FCN segmentation models, build verified INT8/FP16 artifacts, stream cameras through them.",
        epilog=f"commands:\n{listing}\n\n`{PROG} <command> --help` shows a command's flags.",
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="command", help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``fcn-edge <command> [flags]``: run that command's ``main`` with the flags; its exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        _overview().print_help()
        return 0 if arguments else 2
    parsed = _overview().parse_args(arguments[:1])
    command = COMMANDS[parsed.command]
    from .errors import exit_without_torch, quiet_interrupt_while_importing

    quiet_interrupt_while_importing()  # Ctrl-C while the stage loads (torch, ONNX tools: seconds): one line, exit 130
    if command.needs_torch:
        exit_without_torch(command_line(parsed.command))
    stage = importlib.import_module(command.module)
    return int(stage.main(arguments[1:]) or 0)


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


def positive_int(text: str) -> int:
    """A count that must be at least 1 (--threads: 0 would mean "the default" to one backend and an error to another)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


if __name__ == "__main__":
    raise SystemExit(main())


def nonempty_path(text: str) -> Path:
    """A file or folder flag: empty is refused, not read as '.' (``--save-dir ""`` would write into the working folder)."""
    return Path(nonempty(text))
