"""The CPU check of what TensorRT's ONNX parser takes: it rejects the graph fcn_edge exported before uint8 was
confined to the boundary, passes every graph the build now makes for TensorRT, and names the nodes of a
foreign model it would reject."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT
from fcn_edge.backends.tensorrt import compat, opset
from fcn_edge.errors import FcnEdgeError
from fcn_edge.quantize import placement as placement_rules
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
    assert ("asymmetric_uint8", "quantizes to UINT8; TensorRT 10.x takes INT8, FP8, INT4, FP4") in found
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
    """What build_engine.py --fp32/--fp16/--int8 hand TensorRT, made by the same steps: prepared FP32, FP16, Q/DQ;
    an 8.x build takes each at opset 17, converted with the same labels."""
    from fcn_edge.compile.source import from_onnx
    from fcn_edge.export.onnx import export_checkpoint
    from fcn_edge.quantize import calibration, fp16, statistics

    exported, prepared = tmp_path / "default.onnx", tmp_path / "prepared.onnx"
    export_checkpoint(ROOT / "checkpoints" / "default.pt", exported)
    qdq.prepare(exported, prepared)
    frames = calibration.load_frames(calibration.find_calibration_set(ROOT / "calibration").calibrate[:4], (128, 256))
    feeds = [from_onnx(exported).feed([frame]) for frame in frames]
    qdq.quantize(
        prepared, tmp_path / "int8.onnx", statistics.collect_ranges(onnx.load(prepared), feeds, "max", progress=False), "tensorrt"
    )
    fp16.to_fp16(prepared, tmp_path / "fp16.onnx")
    for graph in ("default.onnx", "prepared.onnx", "fp16.onnx", "int8.onnx"):
        found = {line: [p.rule for p in problems] for line, problems in compat.report(tmp_path / graph).items()}
        assert found == {"8": ["opset"], "10": [], "11": []}, graph  # the exporter writes opset 18
        converted = opset.for_line(tmp_path / graph, "8", tmp_path / "opset17")
        assert compat.report(converted) == {line: [] for line in LINES}, graph
        assert all(np.array_equal(a, b) for a, b in zip(_run(tmp_path / graph, feeds[0]), _run(converted, feeds[0]))), graph


@pytest.mark.parametrize("name", ["default.int8.trt-qdq.onnx", "default.int8.calib.onnx"])
def test_the_default_artifacts_in_engines_parse_on_every_line(name, tmp_path):
    """The files python scripts/build_engine.py --int8 wrote into engines/, where they exist: clean on 10.x and 11.x,
    and on 8.x once converted to opset 17 as the engine build does (the exporter writes opset 18)."""
    path = ROOT / "engines" / name
    if not path.is_file():
        pytest.skip(f"{path} is not built: python scripts/build_engine.py --int8")
    found = {line: [p.rule for p in problems] for line, problems in compat.report(path).items()}
    stale = "stale? rebuild with python scripts/build_engine.py --int8 --force"
    assert found == {"8": ["opset"], "10": [], "11": []} or found == {line: [] for line in LINES}, (found, stale)
    assert compat.report(opset.for_line(path, "8", tmp_path / "opset17")) == {line: [] for line in LINES}, stale


def test_the_command_lists_the_nodes_and_exits_non_zero(tmp_path, capsys):
    onnx.save(_frame_model(old=True), tmp_path / "old.onnx")
    onnx.save(_frame_model(old=False), tmp_path / "new.onnx")
    assert compat.main([str(tmp_path / "old.onnx"), "--line", "8"]) == 1
    assert "/Cast_3 (Cast)" in capsys.readouterr().out
    assert compat.main([str(tmp_path / "new.onnx")]) == 0
    (tmp_path / "junk.onnx").write_bytes(b"\x01 not onnx")
    assert compat.main([str(tmp_path / "junk.onnx")]) == 2
    assert "is not an ONNX model" in capsys.readouterr().err


def _run(path, feed: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


def _opset18_model() -> onnx.ModelProto:
    """The nodes opset 18 changed, as the exporter writes them: Reduce* with an axes input, Pad, Resize, Split."""
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        helper.make_node("Constant", [], ["mean_axes"], value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("ReduceMean", ["x", "mean_axes"], ["mean"], name="mean"),  # keepdims: 1 x 1 x 8 x 8
        helper.make_node("Sub", ["x", "mean"], ["centred"], name="centre"),
        helper.make_node("ReduceMax", ["centred", "axes"], ["peak"], name="peak"),
        helper.make_node("Div", ["centred", "peak"], ["scaled"], name="scale"),
        helper.make_node("Pad", ["scaled", "pads"], ["padded"], name="pad", mode="reflect"),
        helper.make_node("Resize", ["padded", "", "scales"], ["big"], name="resize", mode="linear"),
        helper.make_node("Split", ["big"], ["a", "b"], name="split", axis=1, num_outputs=2),
    ]
    return _model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("a", "b")], [axes, pads, scales], opset=18,
    )  # fmt: skip


def test_an_opset_above_the_parsers_is_one_problem_on_that_line_only():
    report = compat.report(_opset18_model())  # 8.6 would drop ReduceMean-18's axes input and average every axis
    assert [(p.node, p.rule) for p in report["8"]] == [("model", "opset")]
    assert "up to 17" in report["8"][0].detail and "Opset 17" in report["8"][0].source
    assert report["10"] == report["11"] == []
    with pytest.raises(FcnEdgeError, match=r"TensorRT 8\.x's ONNX parser would reject m: model \(-\): is opset 18"):
        compat.require_parsable(_opset18_model(), "8", "m")


def test_for_line_writes_an_opset_17_copy_for_8x_with_the_same_outputs(tmp_path):
    source = tmp_path / "m.onnx"
    onnx.save(_opset18_model(), source)
    assert opset.for_line(source, "10", tmp_path / "work") == source  # 10.x implements opset 18
    converted = opset.for_line(source, "8", tmp_path / "work")
    model = onnx.load(converted)
    assert converted != source and opset.default_opset(model) == 17
    assert {n.op_type: len(n.input) for n in model.graph.node} == {
        "ReduceMean": 1, "Sub": 2, "ReduceMax": 1, "Div": 2, "Pad": 2, "Resize": 3, "Split": 1,
    }  # axes became attributes, the Constant feeding them is gone  # fmt: skip
    assert compat.report(converted) == {line: [] for line in LINES}
    feed = {"x": np.random.default_rng(0).normal(size=(1, 4, 8, 8)).astype(np.float32)}
    before, after = _run(source, feed), _run(converted, feed)
    assert [a.shape for a in after] == [(1, 2, 20, 20)] * 2 and all(np.array_equal(a, b) for a, b in zip(before, after))


def test_for_line_names_the_node_it_cannot_convert(tmp_path):
    model = _opset18_model()
    model.graph.node[5].input.extend(["", "axes"])  # Pad-18 over axes 2 and 3 only: no opset-17 form
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(
        FcnEdgeError,
        match=r"cannot take .*m\.onnx from opset 18 to 17 for TensorRT 8\.x: node pad \(Pad\) "
        r"pads only the axes of its axes input.*--opset 17$",
    ):
        opset.for_line(tmp_path / "m.onnx", "8", tmp_path)


def _resize_model(scales, **attrs) -> onnx.ModelProto:
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", **attrs)
    return _model(
        [node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(np.array(scales, np.float32), "scales")],
    )  # fmt: skip


def test_resize_modes_and_axes_the_parser_rejects():
    def rules(scales, **attrs):
        return {
            line: [p.detail.split(":")[0] for p in found] for line, found in compat.report(_resize_model(scales, **attrs)).items()
        }

    crop = rules([1, 1, 2, 2], mode="linear", coordinate_transformation_mode="tf_crop_and_resize")
    assert crop == {line: ["coordinate_transformation_mode tf_crop_and_resize"] for line in LINES}
    assert rules([2, 1, 1, 1], mode="linear") == {line: ["linear resize scales axis 0 by 2"] for line in LINES}
    assert rules([1, 2, 2, 2], mode="linear") == {line: [] for line in LINES}  # linear: the innermost 3 axes (C, H, W)
    assert rules([1, 2, 2, 2], mode="cubic") == {line: ["cubic resize scales axis 1 by 2"] for line in LINES}
    assert rules([2, 2, 2, 2], mode="nearest") == {line: [] for line in LINES}
    nn_floor = rules([1, 1, 2, 2], coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor")
    assert nn_floor == {"8": ["tf_half_pixel_for_nn with nearest_mode floor"], "10": [], "11": []}


def test_a_dequantize_without_zero_point_is_rejected_by_8x_only():
    weight = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.int8), "w_int8")
    nodes = [
        helper.make_node("DequantizeLinear", ["w_int8", "s"], ["w"], name="dq_weight"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    model = _model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight, numpy_helper.from_array(np.float32(0.1), "s")],
    )  # fmt: skip
    report = compat.report(model)
    assert [(p.node, p.rule, p.detail.split(":")[0]) for p in report["8"]] == [("dq_weight", "qdq", "has no zero-point input")]
    assert report["10"] == report["11"] == []


def test_ops_the_10x_parser_added_after_10_1_pass_on_10_and_11():
    signal = helper.make_tensor_value_info("signal", TensorProto.FLOAT, [1, 64, 1])
    step = numpy_helper.from_array(np.array(16, np.int64), "step")
    stft = helper.make_node("STFT", ["signal", "step", "", "length"], ["spectrum"], name="stft", onesided=1)
    length = numpy_helper.from_array(np.array(32, np.int64), "length")
    model = _model([stft], [signal], [helper.make_tensor_value_info("spectrum", TensorProto.FLOAT, None)], [step, length])
    report = compat.report(model)  # STFT: onnx-tensorrt 10.5 (operators.md of 10.15), not in 10.1's table
    assert report["10"] == report["11"] == [] and [(p.node, p.rule) for p in report["8"]] == [("stft", "op")]


@pytest.mark.parametrize("content", [b"", b"\x08\x01"])
def test_the_command_says_an_empty_or_two_byte_file_is_not_onnx(tmp_path, capsys, content):
    (tmp_path / "m.onnx").write_bytes(content)
    assert compat.main([str(tmp_path / "m.onnx")]) == 2
    captured = capsys.readouterr()
    assert "is not an ONNX model" in captured.err and "parses it" not in captured.out


def test_onnxruntime_placement_gives_convs_with_no_q_behind_them_float_weights_with_the_same_outputs(tmp_path):
    """ASPP-like: two conv branches into a Concat (never quantized), then a conv. On ONNX Runtime the branches run in
    float whatever their weights, so they get float weights (NCHWc kernels); TensorRT's placement keeps its Q/DQ."""
    rng = np.random.default_rng(0)
    shapes = {"w0": (16, 16, 3, 3), "w1": (16, 16, 1, 1), "w2": (16, 32, 1, 1), "b0": (16,), "b1": (16,)}
    initializers = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name) for name, shape in shapes.items()]
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Transpose", ["f"], ["x"], perm=[0, 3, 1, 2], name="nchw"),
        helper.make_node("Conv", ["x", "w0", "b0"], ["c1"], pads=[2, 2, 2, 2], dilations=[2, 2], name="branch1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c2"], name="branch2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Concat", ["r1", "r2"], ["cat"], axis=1, name="concat"),
        helper.make_node("Conv", ["cat", "w2"], ["scores"], name="project"),
    ]
    source, prepared = tmp_path / "aspp.onnx", tmp_path / "prepared.onnx"
    onnx.save(_model(nodes, [helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, 8, 8, 16])],
                     [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 16, 8, 8])], initializers), source)  # fmt: skip
    qdq.prepare(source, prepared)
    tensors = ["x", "c1", "r1", "c2", "r2", "cat", "scores"]
    ranges = TensorRanges("max", {t: 4.0 for t in tensors}, {t: -4.0 for t in tensors}, {t: 4.0 for t in tensors})
    feed = {"frame": np.random.default_rng(1).integers(0, 255, (1, 8, 8, 16)).astype(np.uint8)}
    for placement in qdq.PLACEMENTS:
        out = tmp_path / f"{placement}.onnx"
        qdq.quantize(prepared, out, ranges, placement)
        model = onnx.load(out)
        constants = {t.name for t in model.graph.initializer}
        convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
        float_inputs = {name: sum(i in constants for i in conv.input[1:]) for name, conv in convs.items()}
        if placement == "onnxruntime":  # weight and bias as float initializers: only the two branches
            assert float_inputs == {"branch1": 2, "branch2": 2, "project": 0}
            assert [n.name for n in placement_rules.float_convs(model.graph)] == ["branch1", "branch2"]
        else:  # TensorRT takes float biases and fuses every weight's DequantizeLinear into its INT8 conv
            assert float_inputs == {"branch1": 1, "branch2": 1, "project": 0}
    # the rule alone on the model without it: the same numbers, only the weights' route changes
    model = onnx.load(tmp_path / "onnxruntime.onnx")
    folded = {n.name for n in model.graph.node if n.op_type == "Conv" and n.input[1] in {t.name for t in model.graph.initializer}}
    assert folded == {"branch1", "branch2"}
    before = tmp_path / "before.onnx"
    qdq.quantize(prepared, before, ranges, "tensorrt")  # Q/DQ weights everywhere, the graph the rule rewrites
    model = onnx.load(before)
    reference = _run(before, feed)[0]
    placement_rules.apply(model, ("float_weights",))
    onnx.save(model, tmp_path / "after.onnx")
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) < sum(
        n.op_type == "DequantizeLinear" for n in onnx.load(before).graph.node
    )
    np.testing.assert_allclose(_run(tmp_path / "after.onnx", feed)[0], reference, rtol=1e-5, atol=1e-4)
