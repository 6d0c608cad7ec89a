"""The capability table is the one place deciding backend x precision: what the build tries, what runs a file."""

from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT
from fcn_edge import capabilities
from fcn_edge.backends import BACKENDS, backend_for
from fcn_edge.errors import FcnEdgeError


def test_the_table_covers_every_backend_and_only_known_precisions():
    assert {c.backend for c in capabilities.TABLE} == set(BACKENDS) - {"auto"}
    assert {c.precision for c in capabilities.TABLE} <= set(capabilities.PRECISIONS)
    pairs = [(c.backend, c.precision) for c in capabilities.TABLE]
    assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize(
    "requested, target, cpu, bf16, dla, expected",
    [(None, "tensorrt", ("onnxruntime",), False, False, ["int8", "fp16", "fp32"]),
     (None, "tensorrt", ("onnxruntime",), False, True, ["int8", "fp16"]),
     (None, "onnxruntime", ("onnxruntime", "openvino"), True, False, ["int8", "bf16", "fp32"]),
     ("fp16", "onnxruntime", ("onnxruntime",), False, False, ["fp16"])],
)  # fmt: skip
def test_the_automatic_choice_tries_what_a_runtime_here_runs(requested, target, cpu, bf16, dla, expected):
    assert capabilities.candidates(requested, target, cpu, bf16, dla) == expected


@pytest.mark.parametrize("requested, dla, fragment", [("fp32", True, "cannot run on DLA"), ("fp8", False, "unknown")])
def test_what_nothing_here_runs_is_refused_saying_why(requested, dla, fragment):
    with pytest.raises(FcnEdgeError, match=fragment):
        capabilities.candidates(requested, "tensorrt", ("onnxruntime",), False, dla)


def test_open_runner_follows_the_sidecar_through_the_table(tmp_path):
    model = tmp_path / "m.bf16.onnx"
    model.write_bytes(b"")
    (tmp_path / "m.bf16.onnx.json").write_text(json.dumps({"precision": "bf16"}))
    assert backend_for(model) == "openvino"  # only OpenVINO runs BF16 on a CPU
    (tmp_path / "m.bf16.onnx.json").write_text("{damaged")
    assert backend_for(model) == "onnxruntime"
    assert capabilities.runtime_for("int8", "openvino", openvino_installed=False) == "onnxruntime"


def test_no_other_module_lists_the_precisions_a_backend_runs():
    """A second list of precisions (PRECISIONS = ..., a tuple of three or more) is a second place deciding them."""
    listing = re.compile(
        r'PRECISIONS\s*=\s*[(\[{]|\(\s*"(int8|fp16|bf16|fp32)",\s*"(int8|fp16|bf16|fp32)",\s*"(int8|fp16|bf16|fp32)"'
    )
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "fcn_edge").rglob("*.py")
                 if p.name != "capabilities.py" and listing.search(p.read_text())]  # fmt: skip
    assert offenders == []
