"""scripts/export_onnx.py as a user runs it: a report on success, one-line errors and no files on failure.

Each run costs a few seconds of imports, so the rest of the argument checks (an opset too new,
a model that does not verify) are tested through the API in tests/unit/test_export_onnx.py.
"""

from __future__ import annotations

import pytest
import torch

from fcn_edge.checkpoint import save_checkpoint
from fcn_edge.data.synthetic import CLASSES, PALETTE
from fcn_edge.metadata import read_metadata
from fcn_edge.models import ModelConfig, build_model
from fcn_edge.spec import Preprocess

from conftest import assert_user_error, run_script

pytestmark = pytest.mark.slow

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # torch threads spin-wait on a busy 2-core machine


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = ModelConfig(num_classes=8, upsample="deconv")
    path = tmp_path_factory.mktemp("checkpoint") / "deconv.pt"
    return save_checkpoint(path, build_model(config), config, CLASSES, PALETTE, Preprocess())


def test_default_export_reports_and_writes_one_verified_file(checkpoint, tmp_path):
    output = tmp_path / "deconv.onnx"
    result = run_script("export_onnx.py", "--checkpoint", checkpoint, "--output", output, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    for fragment in (
        "opset 18",
        "dynamo=False",
        "frame uint8 [N, H, W, 3]",
        "labels uint8 [N, H, W]",
        "ConvTranspose 0 remaining",
        "3 replaced, 0 kept",
        "96x128",
        "105x141",
        "256x320",
    ):
        assert fragment in report, report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deconv.onnx"]
    meta = read_metadata(output)
    assert meta.input_format == "frame" and meta.outputs == ["labels"] and meta.output_stride == 32


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--checkpoint", "{tmp}/missing.pt"], ["missing.pt", "does not exist"]),
        (["--opset", "16"], ["opset 16 is not supported", "17.."]),
        (["--output", "{tmp}/no/such/folder/m.onnx"], ["no/such/folder", "does not exist"]),
    ],
    ids=["missing-checkpoint", "opset-too-old", "missing-folder"],
)
def test_bad_input_is_one_line_and_leaves_no_file(checkpoint, tmp_path, args, fragments):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    defaults = {"--checkpoint": str(checkpoint), "--output": str(tmp_path / "m.onnx")}
    for flag, value in defaults.items():
        if flag not in args:
            args += [flag, value]
    result = run_script("export_onnx.py", *args, env=ONE_THREAD)
    assert_user_error(result, *(f.replace("{tmp}", str(tmp_path)) for f in fragments))
    assert list(tmp_path.iterdir()) == []
