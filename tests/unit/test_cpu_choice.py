"""The build's CPU runtimes: which precisions each offers, what --backend openvino and auto mean, the sidecar entry."""

from __future__ import annotations

import pytest

from fcn_edge.compile import cpu
from fcn_edge.compile.options import Backend
from fcn_edge.compile.pipeline import candidate_precisions, choose_backend
from fcn_edge.errors import FcnEdgeError

ORT = Backend("onnxruntime", "", {"name": "onnxruntime"})
BOTH = Backend("onnxruntime", "", {"name": "onnxruntime", "bf16": True}, ("onnxruntime", "openvino"))
OPENVINO = Backend("openvino", "", {"name": "openvino", "bf16": True}, ("openvino",))


def test_best_precision_order_per_cpu_runtime():
    assert candidate_precisions(None, ORT) == ["int8", "fp32"]
    assert candidate_precisions(None, BOTH) == ["int8", "bf16", "fp32"]
    assert candidate_precisions("bf16", OPENVINO) == ["bf16"]
    no_bf16 = Backend("openvino", "", {"name": "openvino", "bf16": False}, ("openvino",))
    assert candidate_precisions(None, no_bf16) == ["int8", "fp32"]


@pytest.mark.parametrize(
    "precision, backend, message",
    [("bf16", ORT, "install it"), ("bf16", Backend("openvino", "", {"bf16": False}, ("openvino",)), "this CPU has none"),
     ("fp16", OPENVINO, "OpenVINO on this machine runs --int8, --bf16 or --fp32")],
)  # fmt: skip
def test_precisions_a_runtime_cannot_run_are_refused_with_the_fix(precision, backend, message):
    with pytest.raises(FcnEdgeError, match=message):
        candidate_precisions(precision, backend)


def test_openvino_is_a_backend_where_installed():
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install -e '.[openvino]')")
    chosen = choose_backend("openvino")
    assert chosen.name == "openvino" and chosen.cpu_backends == ("openvino",) and chosen.record["version"]
    assert choose_backend("onnxruntime").cpu_backends == ("onnxruntime",)


def test_sidecar_entry_names_the_runtime_its_settings_and_the_measurement():
    facts = cpu.sidecar_entry("openvino", "int8", {"onnxruntime": 30.7, "openvino": 20.1}, "auto", "2026.4.1", 3)
    assert facts["name"] == "openvino" and facts["inference_precision"] == "f32" and facts["version"] == "2026.4.1"
    assert facts["why"] == "auto; measured: OpenVINO 20.1 ms, ONNX Runtime 30.7 ms" and facts["threads"] == 3
    ort = cpu.sidecar_entry("onnxruntime", "fp32", {"onnxruntime": 70.0}, "asked", None, 3)["session_options"]
    assert ort["thread_policy"] and ort["intra_op_num_threads"] == 3


def test_sidecar_entry_says_when_the_default_runtime_runs_it_within_the_spread():
    facts = cpu.sidecar_entry("onnxruntime", "int8", {"onnxruntime": 30.7, "openvino": 30.1}, "auto", "2026.4.1", 2)
    assert (
        facts["why"]
        == "auto; measured: OpenVINO 30.1 ms, ONNX Runtime 30.7 ms (within the spread: ONNX Runtime, the default, runs it)"
    )
