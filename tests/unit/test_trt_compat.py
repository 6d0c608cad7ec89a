"""The CPU check of what TensorRT's ONNX parser takes: it rejects the graph fcn_edge exported before uint8 was
confined to the boundary, passes every graph the build now makes for TensorRT, and names the nodes of a
foreign model it would reject."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT
from fcn_edge.backends.tensorrt import compat
from fcn_edge.errors import FcnEdgeError
from fcn_edge.quantize import qdq
from fcn_edge.quantize.statistics import TensorRanges

LINES = compat.LINES


def _model(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _frame_model(old: bool) -> onnx.ModelProto:
    """The labels path of fcn_edge's exports: today's (Cast first, uint8 last) or the one before (uint8 inside)."""
    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    if old:  # Transpose on uint8, ArgMax cast straight to uint8, then sliced: as fcn_edge exported until issue 10
        nodes = [
            helper.make_node("Transpose", ["frame"], ["t"], name="/Transpose", perm=[0, 3, 1, 2]),
            helper.make_node("Cast", ["t"], ["f"], name="/Cast", to=TensorProto.FLOAT),
            helper.make_node("Conv", ["f", "w"], ["logits"], name="/Conv"),
            helper.make_node("ArgMax", ["logits"], ["index"], name="/ArgMax", axis=1, keepdims=0),
            helper.make_node("Cast", ["index"], ["bytes"], name="/Cast_3", to=TensorProto.UINT8),
            helper.make_node("Identity", ["bytes"], ["labels"], name="/Slice_4"),
        ]
    else:
        nodes = [
            helper.make_node("Cast", ["frame"], ["f"], name="/Cast", to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["f"], ["t"], name="/Transpose", perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["t", "w"], ["logits"], name="/Conv"),
            helper.make_node("ArgMax", ["logits"], ["index"], name="/ArgMax", axis=1, keepdims=0),
            helper.make_node("Cast", ["index"], ["float"], name="/Cast_float", to=TensorProto.FLOAT),
            helper.make_node("Identity", ["float"], ["cropped"], name="/Slice"),
            helper.make_node("Cast", ["cropped"], ["labels"], name="/Cast_labels", to=TensorProto.UINT8),
        ]
    return _model(
        nodes, [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"])], [weight],
    )  # fmt: skip


def test_the_graph_exported_before_issue_10_is_rejected_by_every_line_with_the_nodes_named():
    for line, problems in compat.report(_frame_model(old=True)).items():
        named = {(p.node, p.rule) for p in problems}
        assert ("/Transpose", "uint8") in named, line  # uint8 frame transposed before the Cast
        assert ("/Cast_3", "uint8") in named, line  # ArgMax cast straight to uint8, an intermediate tensor
        assert ("/Slice_4", "uint8") in named, line  # the uint8 output made by a slice, not a Cast from float
        assert all("operators.md" in p.source or "UINT8" in p.source for p in problems)
    with pytest.raises(FcnEdgeError, match=r"TensorRT 10\.x's ONNX parser would reject .*/Transpose \(Transpose\)"):
        compat.require_parsable(_frame_model(old=True), "10", "the old graph")


def test_todays_labels_path_parses_on_every_line():
    assert compat.report(_frame_model(old=False)) == {line: [] for line in LINES}


def test_a_foreign_model_with_an_op_tensorrt_lacks_is_named_per_line():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Det", ["r"], ["d"], name="the_det"),  # no importer in any line
        helper.make_node("Shape", ["r"], ["s"], name="shape"),
        helper.make_node("Cast", ["s"], ["y"], name="to_int64"),
    ]
    model = _model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, []), helper.make_tensor_value_info("y", TensorProto.INT64, [2])],
    )  # fmt: skip
    model.graph.node[3].attribute.append(helper.make_attribute("to", TensorProto.INT64))
    report = compat.report(model)
    assert [(p.node, p.rule) for p in report["10"]] == [("the_det", "op")]
    assert ("the_det", "op") in {(p.node, p.rule) for p in report["8"]}
    assert ("network output y", "int64-io") in {(p.node, p.rule) for p in report["8"]}  # no INT64 type before 10.0


def test_qdq_rules_symmetric_int8_and_per_channel_weights_only():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    init = [
        numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.uint8(128), "zu"),
        numpy_helper.from_array(np.full(4, 0.1, np.float32), "s4"), numpy_helper.from_array(np.zeros(4, np.int8), "z4"),
    ]  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zu"], ["q"], name="asymmetric_uint8"),
        helper.make_node("DequantizeLinear", ["q", "s", "zu"], ["d"], name="dq"),
        helper.make_node("QuantizeLinear", ["d", "s4", "z4"], ["q2"], name="per_channel_activation", axis=1),
        helper.make_node("DequantizeLinear", ["q2", "s4", "z4"], ["y"], name="dq2", axis=1),
    ]
    problems = compat.check(_model(nodes, [x], [y], init), "10")
    found = {(p.node, p.detail.split(":")[0]) for p in problems}
    assert ("asymmetric_uint8", "zero point is not all zeros") in found
    assert ("asymmetric_uint8", "quantizes to UINT8; TensorRT 10.x takes INT8, FP8, INT4") in found
    assert ("per_channel_activation", "per-channel scales on an activation") in found


def _conv_model() -> onnx.ModelProto:
    """Conv -> Relu -> Conv -> Add(residual) -> Relu: the ResNet block the placement rules are about."""
    rng = np.random.default_rng(0)
    w = [numpy_helper.from_array(rng.normal(size=(16, 16, 3, 3)).astype(np.float32), f"w{i}") for i in range(2)]
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Transpose", ["f"], ["x"], perm=[0, 3, 1, 2], name="nchw"),
        helper.make_node("Conv", ["x", "w0"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w1"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c2", "x"], ["sum"], name="add"),
        helper.make_node("Relu", ["sum"], ["out"], name="relu2"),
        helper.make_node("ArgMax", ["out"], ["i"], axis=1, keepdims=0, name="argmax"),
        helper.make_node("Cast", ["i"], ["fl"], to=TensorProto.FLOAT, name="float"),
        helper.make_node("Cast", ["fl"], ["labels"], to=TensorProto.UINT8, name="labels"),
    ]
    return _model(
        nodes, [helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, 8, 8, 16])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, 8, 8])], w,
    )  # fmt: skip


def test_qdq_placement_parses_and_keeps_qdq_off_the_main_branch_and_between_conv_and_relu(tmp_path):
    source = tmp_path / "block.onnx"
    onnx.save(_conv_model(), source)
    prepared = tmp_path / "prepared.onnx"
    qdq.prepare(source, prepared)
    tensors = ["x", "c1", "r1", "c2", "sum", "out"]
    ranges = TensorRanges("max", {t: 4.0 for t in tensors}, {t: -4.0 for t in tensors}, {t: 4.0 for t in tensors})
    freed = {}
    for placement in qdq.PLACEMENTS:
        out = tmp_path / f"{placement}.onnx"
        freed[placement] = qdq.quantize(prepared, out, ranges, placement)
        model = onnx.load(out)
        producer = {o: n for n in model.graph.node for o in n.output}
        by_name = {n.name: n for n in model.graph.node}
        assert producer[by_name["relu1"].input[0]].op_type == "Conv"  # no Q/DQ between a conv and its ReLU
        add_inputs = [producer[i].op_type for i in by_name["add"].input]
        if placement == "tensorrt":
            assert add_inputs == ["Conv", "DequantizeLinear"]  # main branch fused, residual branch quantized
            assert compat.report(model) == {line: [] for line in LINES}
        else:
            assert add_inputs == ["DequantizeLinear", "DequantizeLinear"]  # ORT's integer conv needs its Q
    assert freed == {"tensorrt": ["add:0"], "onnxruntime": ["relu1:0", "relu2:0"]}


@pytest.mark.slow
def test_every_graph_a_build_of_the_default_model_makes_for_tensorrt_parses_on_every_line(tmp_path):
    """What build_engine.py --fp32/--fp16/--int8 hand TensorRT, made by the same steps: prepared FP32, FP16, Q/DQ."""
    from fcn_edge.compile.source import from_onnx
    from fcn_edge.export.onnx import export_checkpoint
    from fcn_edge.quantize import calibration, fp16, statistics

    exported, prepared = tmp_path / "default.onnx", tmp_path / "prepared.onnx"
    export_checkpoint(ROOT / "checkpoints" / "default.pt", exported)
    qdq.prepare(exported, prepared)
    frames = calibration.load_frames(calibration.find_calibration_set(ROOT / "calibration").calibrate[:4], (128, 256))
    feeds = [from_onnx(exported).feed([frame]) for frame in frames]
    qdq.quantize(prepared, tmp_path / "int8.onnx", statistics.collect_ranges(onnx.load(prepared), feeds, "max", progress=False), "tensorrt")
    fp16.to_fp16(prepared, tmp_path / "fp16.onnx")
    for graph in ("prepared.onnx", "fp16.onnx", "int8.onnx"):
        assert compat.report(tmp_path / graph) == {line: [] for line in LINES}, graph


@pytest.mark.parametrize("name", ["default.int8.trt-qdq.onnx", "default.int8.calib.onnx"])
def test_the_default_artifacts_in_engines_parse_on_every_line(name):
    """The files python scripts/build_engine.py --int8 wrote into engines/, where they exist."""
    path = ROOT / "engines" / name
    if not path.is_file():
        pytest.skip(f"{path} is not built: python scripts/build_engine.py --int8")
    assert compat.report(path) == {line: [] for line in LINES}, "stale? rebuild with python scripts/build_engine.py --int8 --force"


def test_the_command_lists_the_nodes_and_exits_non_zero(tmp_path, capsys):
    onnx.save(_frame_model(old=True), tmp_path / "old.onnx")
    onnx.save(_frame_model(old=False), tmp_path / "new.onnx")
    assert compat.main([str(tmp_path / "old.onnx"), "--line", "8"]) == 1
    assert "/Cast_3 (Cast)" in capsys.readouterr().out
    assert compat.main([str(tmp_path / "new.onnx")]) == 0
    (tmp_path / "junk.onnx").write_bytes(b"\x01 not onnx")
    assert compat.main([str(tmp_path / "junk.onnx")]) == 2
    assert "is not an ONNX model" in capsys.readouterr().err
