"""The GPU self-test on a GPU machine: every GPU path that is installed passes (skips allowed), exit status 0."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.gpu


def test_every_installed_gpu_path_passes():
    done = subprocess.run([sys.executable, "-m", "fcn_edge.doctor"], capture_output=True, text=True, cwd=ROOT, timeout=900)
    result = json.loads("{" + done.stdout.rsplit("\n{", 1)[1])  # the table, then the JSON
    failed = {row["name"]: row["detail"] for row in result["rows"] if row["status"] == "FAIL"}
    assert done.returncode == 0 and not failed, failed
