#!/usr/bin/env python3
"""Everything a freshly lent GPU machine can prove, in one run of under 10 minutes, as one JSON report.

``pytest -m gpu`` with FCN_EDGE_REQUIRE_GPU=1 (every skip is a failure: each precision through
scripts/build_engine.py, the engines' labels against the FP32 model, the stream with both CUDA
bindings, mapped memory forced, the CUDA round trips), then ``python -m fcn_edge.doctor``.

  python scripts/gpu_check.py [--out runs/gpu_check.json]

A GPU machine may have no network: install what it needs beforehand (wheels carried over):
this repository with ``pip install -e ".[test]"``, TensorRT (``pip install -e '.[gpu-cu12]'``,
or JetPack's), cuda-python, and PyCUDA (``pip install -e '.[pycuda]'``, needs the CUDA
toolkit). What is missing is named in one line before anything runs (exit 2).
``FCN_EDGE_TENSORRT_STANDIN=10.13`` runs the same on the stand-in, to check the script itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from fcn_edge.cli import HelpFormatter
from fcn_edge.atomic import check_output, write_json_atomic
from fcn_edge.errors import FcnEdgeError, run_cli

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 570  # under 10 minutes in all
NEEDED = {  # import name -> how to install it
    "pytest": 'pip install -e ".[test]"',
    "tensorrt": "pip install -e '.[gpu-cu12]' ('[gpu-cu13]' on a CUDA 13 driver; JetPack's python3-libnvinfer on Jetson)",
    "cuda.bindings": "pip install 'cuda-python>=12,<13'",
    "pycuda": "pip install -e '.[pycuda]' (needs the CUDA toolkit: nvcc, cuda.h)",
}


def missing() -> list[str]:
    found = []
    for name, how in NEEDED.items():
        try:
            present = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent package of a dotted name is absent
            present = False
        if not present:
            found.append(f"{name} ({how})")
    return found


def run_tests(deadline: float) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "gpu.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "tests/gpu",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
        ]
        env = {**os.environ, "FCN_EDGE_REQUIRE_GPU": "1"}
        try:
            subprocess.run(command, cwd=ROOT, env=env, timeout=max(60.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return [{"test": "pytest -m gpu", "status": "failed", "seconds": BUDGET_S, "message": "ran past the time budget"}]
        cases = ElementTree.parse(junit).getroot().iter("testcase")
        return [_case(case) for case in cases]


def _case(case: ElementTree.Element) -> dict:
    problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
    status = "passed" if problem is None else {"failure": "failed", "error": "error", "skipped": "skipped"}[problem.tag]
    text = "" if problem is None else problem.get("message") or ""
    message = text.splitlines()[0][:300] if text else ""
    return {"test": f"{case.get('classname')}::{case.get('name')}", "status": status, "seconds": float(case.get("time", 0)),
            "message": message}  # fmt: skip


def run_doctor(deadline: float) -> dict:
    """The doctor's JSON (its ``--json`` file), or a failed row saying why there is none."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "doctor.json"
        try:
            done = subprocess.run([sys.executable, "-m", "fcn_edge.doctor", "--json", str(report)], cwd=ROOT, capture_output=True,
                                  text=True, timeout=max(60.0, deadline - time.monotonic()))  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"failed": ["doctor"], "error": "ran past the time budget"}
        if not report.is_file():
            return {"failed": ["doctor"], "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
        return json.loads(report.read_text())


@run_cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=Path("runs/gpu_check.json"), help="the JSON report (default runs/gpu_check.json)"
    )
    args = parser.parse_args(argv)
    check_output(args.out, "--out")
    absent = missing()
    if absent:
        raise FcnEdgeError(
            f"this machine lacks {'; '.join(absent)}: install them (wheels carried over where there is no network)"
        )
    started = time.monotonic()
    deadline = started + BUDGET_S
    tests = run_tests(deadline)
    doctor = run_doctor(deadline)
    failed = [t["test"] for t in tests if t["status"] != "passed"] + [f"doctor:{name}" for name in doctor.get("failed", [])]
    report = {
        "python": platform.python_version(), "standin": os.environ.get("FCN_EDGE_TENSORRT_STANDIN") or None,
        "tests": tests, "doctor": doctor, "failed": failed, "seconds": round(time.monotonic() - started, 1),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report, indent=1)
    print(f"{'test':<90}{'status':>8}{'s':>7}")
    for test in tests:
        print(f"{test['test'][-89:]:<90}{test['status']:>8}{test['seconds']:>7.1f}")
    print(f"doctor: {len(doctor.get('rows', []))} rows, failed: {', '.join(doctor.get('failed', [])) or 'none'}")
    print(f"{len(tests) - len([t for t in tests if t['status'] != 'passed'])} passed, {len(failed)} failed; report {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
