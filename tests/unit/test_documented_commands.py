"""Every command README and docs/ show parses against its command's flags, so a renamed or removed flag
fails here, not in a user's shell. (Running each is the job of the tests of each stage.)"""

from __future__ import annotations

import importlib
import re
import shlex

import pytest

from conftest import ROOT
from fcn_edge.cli import COMMANDS
from fcn_edge.errors import FcnEdgeError

SCRIPTS = {"train": "train", "evaluate": "evaluate", "convert_checkpoint": "convert", "export_onnx": "export",
           "checkerboard": "checkerboard", "make_calibration_set": "calibration-set", "build_engine": "build",
           "benchmark": "bench"}  # fmt: skip
MODULES = {"fcn_edge.stream": "stream", "fcn_edge.doctor": "doctor", "fcn_edge.backends.tensorrt.compat": "compat"}
STARTS = re.compile(r"(fcn-edge [a-z][a-z-]*|python3? scripts/\w+\.py|python3? -m fcn_edge[\w.]*)(?=\s|$)")
SHELL = {"|", "||", "&&", ";", ">", ">>", "2>&1", "&"}


def documented() -> list[tuple[str, str]]:
    """(where, command line) of every fcn_edge command in the docs' code blocks and inline code."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]  # continuations joined
        lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in lines:
            line = re.split(r"\s+#", line.strip(), maxsplit=1)[0]
            if STARTS.match(line) and not re.search(r"\.\.\.|[\[\]<>{}]|\$", line):
                found.append((page.name, line))
    return found


def command_of(line: str) -> tuple[str, list[str]] | None:
    words = shlex.split(line)
    words = words[: next((i for i, w in enumerate(words) if w in SHELL), len(words))]
    if words[0] == "fcn-edge":
        return words[1], words[2:]
    if words[1] == "-m":
        return MODULES.get(words[2]), words[3:]
    return SCRIPTS.get(words[1].removeprefix("scripts/").removesuffix(".py")), words[2:]


def test_the_docs_show_commands():
    assert sum(line.startswith("fcn-edge ") for _, line in documented()) >= 5


@pytest.mark.parametrize("where, line", documented())
def test_a_documented_command_parses(where, line):
    command, args = command_of(line)
    if command is None:
        pytest.skip(f"{line}: not an fcn-edge command (a repository script)")
    if not args:
        pytest.skip(f"{line}: a command named in prose, without its flags")
    parse_args = importlib.import_module(COMMANDS[command].module).parse_args
    try:
        parse_args(args)
    except FcnEdgeError:
        pass  # the flags parsed; a parse_args that also checks files (an --output's folder) found none here
    except SystemExit as exit_:
        pytest.fail(f"{where}: `{line}` does not parse (exit {exit_.code}): fix the page or the flag")
