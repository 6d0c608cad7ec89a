"""A real 2-process torchrun (gloo) run: both ranks must end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def test_two_process_torchrun_ends_with_identical_weights(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        str(worker),
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    initial = torch.load(tmp_path / "last.pt", weights_only=True)["state_dict"]
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # rank 0's checkpoint holds those same weights, and each rank took 32 / (4 x 2) = 4 steps
    assert torch.equal(initial["classifier.4.weight"], rank0["classifier.4.weight"])
    assert rank0["backbone.bn1.num_batches_tracked"].item() == 32 // (4 * 2)
