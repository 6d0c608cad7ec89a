"""OpenVINO's INT8 graph (fcn_edge.quantize.openvino_graph): the ONNX Runtime artifact with HardSwish fused back.

A conv -> HardSwish block and a squeeze-excitation gate (HardSigmoid x Mul of another tensor), prepared and
quantized on ONNX Runtime's placement exactly as a build does it, then reshaped for OpenVINO.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_edge.quantize import openvino_graph, qdq
from fcn_edge.quantize.statistics import TensorRanges

CHANNELS = 16


def _block_model(opset: int = 17) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    shapes = {"w0": (CHANNELS, CHANNELS, 1, 1), "w1": (CHANNELS, CHANNELS, 3, 3), "w_se": (CHANNELS, CHANNELS, 1, 1),
              "w2": (CHANNELS, CHANNELS, 1, 1), "b0": (CHANNELS,), "b1": (CHANNELS,)}  # fmt: skip
    initializers = [numpy_helper.from_array(rng.normal(0, 0.3, size=s).astype(np.float32), n) for n, s in shapes.items()]
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Transpose", ["f"], ["x"], perm=[0, 3, 1, 2], name="nchw"),
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="expand"),
        helper.make_node("HardSwish", ["c0"], ["h0"], name="hswish"),
        helper.make_node("Conv", ["h0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("GlobalAveragePool", ["c1"], ["pooled"], name="pool"),
        helper.make_node("Conv", ["pooled", "w_se"], ["squeezed"], name="se"),
        helper.make_node("HardSigmoid", ["squeezed"], ["gate"], alpha=1 / 6, beta=0.5, name="gate"),
        helper.make_node("Mul", ["c1", "gate"], ["gated"], name="excite"),
        helper.make_node("Conv", ["gated", "w2"], ["scores"], name="project"),
    ]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, 8, 8, CHANNELS])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, CHANNELS, 8, 8])], initializers)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.fixture
def int8_model(tmp_path):
    """The ONNX Runtime INT8 artifact of the block model, as the build writes it."""
    source, prepared, int8 = tmp_path / "block.onnx", tmp_path / "prepared.onnx", tmp_path / "block.int8.onnx"
    onnx.save(_block_model(), source)
    qdq.prepare(source, prepared)
    tensors = [o for n in onnx.load(prepared).graph.node for o in n.output]
    ranges = TensorRanges("max", {t: 6.0 for t in tensors}, {t: -6.0 for t in tensors}, {t: 6.0 for t in tensors})
    qdq.quantize(prepared, int8, ranges, "onnxruntime")
    return int8


def _run(path, feed) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


FEED = {"frame": np.random.default_rng(1).integers(0, 255, (1, 8, 8, CHANNELS)).astype(np.uint8)}


def test_onnx_runtimes_int8_graph_has_the_inlined_hard_swish_the_rewrite_undoes(int8_model, tmp_path):
    ops = [n.op_type for n in onnx.load(int8_model).graph.node]
    assert "HardSwish" not in ops and ops.count("HardSigmoid") == 2  # preparation inlined it: the block's and the gate's

    model = onnx.load(int8_model)
    assert openvino_graph.fuse_hard_swish(model) == 1  # the gate multiplies another tensor: not a hard-swish
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("HardSwish") == 1 and ops.count("HardSigmoid") == 1
    onnx.save(model, tmp_path / "fused.onnx")
    np.testing.assert_allclose(_run(tmp_path / "fused.onnx", FEED), _run(int8_model, FEED), rtol=1e-6, atol=1e-5)


def test_openvinos_graph_reads_the_conv_output_unrounded_and_keeps_every_conv_int8(int8_model, tmp_path):
    out = tmp_path / "block.int8.openvino.onnx"
    assert openvino_graph.write(int8_model, out) == 1
    before, after = onnx.load(int8_model), onnx.load(out)
    producer = {o: n for n in after.graph.node for o in n.output}
    swish = next(n for n in after.graph.node if n.op_type == "HardSwish")
    assert producer[swish.input[0]].op_type == "Conv"  # no Q/DQ between the conv and its HardSwish

    def quantizes(model):
        return sum(n.op_type == "QuantizeLinear" for n in model.graph.node)

    assert quantizes(after) == quantizes(before) - 1
    assert qdq.precision_summary(after)["Conv"] == qdq.precision_summary(before)["Conv"]
    # one rounding fewer: the scores move by less than a few steps of the range (12 / 255 per step here)
    assert np.abs(_run(out, FEED) - _run(int8_model, FEED)).max() < 4 * 12 / 255 * np.abs(_run(int8_model, FEED)).max()


def test_openvino_fuses_the_hard_swish_into_the_int8_conv(int8_model, tmp_path):
    ov = pytest.importorskip("openvino", reason="OpenVINO not installed: pip install -e '.[openvino]'")
    out = tmp_path / "block.int8.openvino.onnx"
    openvino_graph.write(int8_model, out)

    def layers(path):
        runtime = ov.Core().compile_model(str(path), "CPU").get_runtime_model()
        return {op.get_friendly_name(): op.get_rt_info() for op in runtime.get_ordered_ops()}

    def fused_with_expand(path):
        return next(str(rt["originalLayersNames"].astype(str)) for rt in layers(path).values()
                    if "expand" in str(rt["originalLayersNames"].astype(str)).split(","))  # fmt: skip

    swish = next(n.name for n in onnx.load(out).graph.node if n.op_type == "HardSwish")  # the Mul's name
    assert swish in fused_with_expand(out).split(",")  # conv, HardSwish and the Q after it: one INT8 kernel
    inlined = {n.name for n in onnx.load(int8_model).graph.node if n.op_type in ("HardSigmoid", "Mul")}
    assert not inlined & set(fused_with_expand(int8_model).split(","))  # before: the conv ran apart from them


def test_below_opset_14_the_pair_stays():
    model = _block_model(opset=13)
    model.graph.node[3].CopyFrom(helper.make_node("HardSigmoid", ["c0"], ["g0"], alpha=1 / 6, beta=0.5, name="g"))
    model.graph.node.insert(4, helper.make_node("Mul", ["c0", "g0"], ["h0"], name="m"))
    assert openvino_graph.fuse_hard_swish(model) == 0
    assert [n.op_type for n in model.graph.node].count("HardSigmoid") == 2
