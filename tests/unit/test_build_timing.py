"""The build's latency rule (medians and spreads -> faster, slower or within noise) and its timing through the runners."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from fcn_edge.compile import pipeline, timing, verify
from fcn_edge.compile.source import from_onnx
from fcn_edge.compile.steps import VerifiedArtifact
from fcn_edge.compile.timing import FASTER, SLOWER, WITHIN_NOISE, Spread
from fcn_edge.metadata import ModelMetadata, write_metadata
from fcn_edge.spec import Preprocess


@pytest.mark.parametrize(
    "ratio, expected",
    [
        (Spread(0.41, 0.40, 0.43), FASTER),
        (Spread(0.97, 0.96, 0.99), FASTER),  # small but steady: every round faster
        (Spread(0.98, 0.93, 1.02), WITHIN_NOISE),  # the median says faster, a quarter of the rounds do not
        (Spread(1.00, 1.00, 1.00), WITHIN_NOISE),  # FP32 against itself
        (Spread(1.03, 0.99, 1.08), WITHIN_NOISE),
        (Spread(1.30, 1.10, 1.50), SLOWER),
    ],
)
def test_a_candidate_is_faster_or_slower_only_beyond_the_spread(ratio, expected):
    assert timing.verdict(ratio) == expected


def test_ratios_are_taken_round_by_round_so_load_on_the_machine_cancels():
    fp32 = [20.0, 60.0, 22.0, 60.0, 20.0, 58.0, 21.0, 62.0]  # a neighbour's load triples half the rounds
    int8 = [10.0, 30.0, 11.0, 30.0, 10.0, 29.0, 10.5, 31.0]
    assert Spread.of(int8).high > Spread.of(fp32).low  # the millisecond spreads overlap...
    ratio = timing.ratio(int8, fp32)
    assert ratio == Spread(0.5, 0.5, 0.5) and timing.verdict(ratio) == FASTER  # ...the rounds agree


def test_the_default_runtime_runs_an_artifact_unless_another_is_faster_beyond_the_spread():
    ort = [30.0, 31.0, 29.0, 30.0, 32.0, 30.0, 29.5, 30.5]
    close = [29.0, 31.5, 28.0, 30.5, 31.0, 29.5, 30.0, 29.0]  # lower median, overlapping rounds
    assert timing.first_faster({"onnxruntime": ort, "openvino": close}) == "onnxruntime"
    assert timing.first_faster({"onnxruntime": ort, "openvino": [t * 0.7 for t in ort]}) == "openvino"
    assert timing.first_faster({"onnxruntime": ort}) == "onnxruntime"


def test_the_build_says_a_candidate_within_the_spread_is_within_noise():
    row = verify.Figures("INT8 (ONNX Runtime)", latency_ms=29.4, latency_ratio=0.98, ratio_iqr=(0.95, 1.02))
    verified = VerifiedArtifact("int8", Path("int8.onnx"), [row], speed=timing.verdict(Spread(0.98, 0.95, 1.02)))
    assert pipeline._speed(verified) == "0.98x the FP32 latency (IQR 0.95-1.02): within noise"
    assert "0.95-1.02" in verify.table([row], "header")


def tensor_model(path: Path) -> Path:
    """One of ours exported with ``--input tensor --output-kind logits`` (float NCHW in, class scores out): a model the
    stream's runners do not take. (A foreign model is wrapped into frames in, labels out, which they do.)"""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], [0.1, 0.2, 0.3, -0.1, -0.2, -0.3])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["logits"])], "tensor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2, "h", "w"])], [weight],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    write_metadata(
        model, ModelMetadata(["a", "b"], [(0, 0, 0), (255, 255, 255)], Preprocess(), "tensor", ["logits"], 1, "0" * 64, {})
    )
    onnx.save_model(model, path)
    return path


def test_frame_models_are_timed_through_the_streams_runners_in_interleaved_rounds(frame_model, tmp_path):
    source = from_onnx(frame_model)
    assert timing.stream_runs(frame_model)
    candidates = {"fp32 onnxruntime": timing.Candidate(frame_model, "onnxruntime", "fp32")}
    openvino = find_spec("openvino") is not None
    if openvino:
        candidates["fp32 openvino"] = timing.Candidate(frame_model, "openvino", "fp32")
    rounds, through = timing.measure(candidates, source, (64, 96), 1, tmp_path / "cache")
    assert through == "runner" and all(len(r) == timing.ROUNDS and min(r) > 0 for r in rounds.values())
    if openvino:  # OpenVINO's runner compiled into the cache it was given; its verification session keeps none
        assert any((tmp_path / "cache").iterdir())


def test_models_the_runners_do_not_take_are_timed_through_sessions(tmp_path):
    path = tensor_model(tmp_path / "tensor.onnx")
    source = from_onnx(path)
    assert not timing.stream_runs(path)
    rounds, through = timing.measure(
        {"fp32 onnxruntime": timing.Candidate(path, "onnxruntime", "fp32")}, source, (32, 48), 1, tmp_path
    )
    assert through == "session" and len(rounds["fp32 onnxruntime"]) == timing.ROUNDS
