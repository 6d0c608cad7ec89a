"""Documented commands write outside tracked files by default: their default outputs are git-ignored.

Each script's --help states its defaults; every default output folder or file must be one that
``git status`` does not show, so running the README's commands leaves a clone clean. The
committed charts and tables change only with an explicit --output or --update-docs.
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

OUTPUTS = [  # (script, flag, a file that flag's default makes)
    ("scripts/train.py", "--out", "best.pt"),
    ("scripts/evaluate.py", "--plots", "best.predictions.png"),
    ("scripts/build_engine.py", "--engines-dir", "default.int8.onnx"),
    ("scripts/checkerboard.py", "--output", ""),
    ("scripts/benchmark.py", "--out", "x86_64-2c-avx2-cpu.json"),
    ("benchmarks/boundaries.py", "--out-dir", "boundaries_synthetic.md"),
    ("benchmarks/cpu_threads.py", "--out-dir", "cpu_threads.md"),
    ("benchmarks/recording_cost.py", "--out-dir", "recording_cost.md"),
    ("benchmarks/stream_overhead.py", "--out-dir", "stream_overhead.md"),
    ("benchmarks/stream_serve.py", "--out-dir", "stream_serve.md"),
]


def default_of(script: str, flag: str) -> str:
    """The default ``script --help`` states for ``flag`` (run in this process: one torch import for all)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        sys.argv = [script, "--help"]
        runpy.run_path(str(ROOT / script), run_name="__main__")
    assert done.value.code in (0, None), out.getvalue()
    lines = out.getvalue().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {flag} "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  -")), len(lines))
    found = re.search(r"\(default: ([^)\s]+)\)", " ".join(" ".join(lines[start:end]).split()))
    assert found, f"{script} --help states no default for {flag}"
    return found[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("script, flag, made", OUTPUTS, ids=[f"{s} {f}" for s, f, _ in OUTPUTS])
def test_default_outputs_are_ignored_by_git(script, flag, made, monkeypatch):
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.syspath_prepend(str((ROOT / script).parent))  # as when run as a script: benchmarks import each other
    target = default_of(script, flag)
    path = f"{target}/{made}" if made else target
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert ignored.returncode == 0, f"{script} writes {path} by default, which git status would show"
