"""What OpenVINO reads for an artifact (fcn_edge.backends.openvino.graph): HardSwish fused back, ArgMax as reductions.

A conv -> HardSwish block and a squeeze-excitation gate (HardSigmoid x Mul of another tensor), prepared and
quantized on ONNX Runtime's placement exactly as a build does it, then read as OpenVINO's runner reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_edge.backends.openvino import graph
from fcn_edge.quantize import qdq
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


def _run(model, feed) -> np.ndarray:
    """``model`` (a path or serialized ONNX) run by ONNX Runtime."""
    import onnxruntime as ort

    model = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]


FEED = {"frame": np.random.default_rng(1).integers(0, 255, (1, 8, 8, CHANNELS)).astype(np.uint8)}


def test_onnx_runtimes_int8_graph_has_the_inlined_hard_swish_the_rewrite_undoes(int8_model, tmp_path):
    ops = [n.op_type for n in onnx.load(int8_model).graph.node]
    assert "HardSwish" not in ops and ops.count("HardSigmoid") == 2  # preparation inlined it: the block's and the gate's

    model = onnx.load(int8_model)
    assert graph.fuse_hard_swish(model) == 1  # the gate multiplies another tensor: not a hard-swish
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("HardSwish") == 1 and ops.count("HardSigmoid") == 1
    onnx.save(model, tmp_path / "fused.onnx")
    np.testing.assert_allclose(_run(tmp_path / "fused.onnx", FEED), _run(int8_model, FEED), rtol=1e-6, atol=1e-5)


def test_openvino_reads_the_conv_output_unrounded_and_every_conv_still_int8(int8_model):
    before, after = onnx.load(int8_model), onnx.load_from_string(graph.read(int8_model))
    producer = {o: n for n in after.graph.node for o in n.output}
    swish = next(n for n in after.graph.node if n.op_type == "HardSwish")
    assert producer[swish.input[0]].op_type == "Conv"  # no Q/DQ between the conv and its HardSwish

    def quantizes(model):
        return sum(n.op_type == "QuantizeLinear" for n in model.graph.node)

    assert quantizes(after) == quantizes(before) - 1
    assert qdq.precision_summary(after)["Conv"] == qdq.precision_summary(before)["Conv"]
    # one rounding fewer: the scores move by less than a few steps of the range (12 / 255 per step here)
    reference = _run(int8_model, FEED)
    assert np.abs(_run(after.SerializeToString(), FEED) - reference).max() < 4 * 12 / 255 * np.abs(reference).max()


def test_openvino_fuses_the_hard_swish_into_the_int8_conv(int8_model):
    ov = pytest.importorskip("openvino", reason="OpenVINO not installed: pip install -e '.[openvino]'")

    def fused_with_expand(model: bytes) -> list[str]:
        runtime = ov.Core().compile_model(ov.Core().read_model(model), "CPU").get_runtime_model()
        names = [str(op.get_rt_info()["originalLayersNames"].astype(str)).split(",") for op in runtime.get_ordered_ops()]
        return next(fused for fused in names if "expand" in fused)

    read = graph.read(int8_model)
    swish = next(n.name for n in onnx.load_from_string(read).graph.node if n.op_type == "HardSwish")  # the Mul's name
    assert swish in fused_with_expand(read)  # conv, HardSwish and the Q after it: one INT8 kernel
    inlined = {n.name for n in onnx.load(int8_model).graph.node if n.op_type in ("HardSigmoid", "Mul")}
    assert not inlined & set(fused_with_expand(int8_model.read_bytes()))  # the file as it is: the conv runs apart


@pytest.mark.parametrize("opset", [13, 17, 18])  # ReduceMax/Min take axes as an attribute before 18, an input from 18
@pytest.mark.parametrize("axis, keepdims", [(1, 0), (1, 1), (-1, 0)])
def test_argmax_as_reductions_gives_argmaxs_labels_ties_included(opset, axis, keepdims, tmp_path):
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 5, "H", "W"])
    dims = ["N", 5, "H", "W"]
    dims[axis] = 1
    labels = helper.make_tensor_value_info("labels", TensorProto.UINT8, dims if keepdims else [d for d in dims if d != 1])
    nodes = [helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0)), name="zero"),
             helper.make_node("Add", ["scores", "zero"], ["shifted"], name="shift"),  # a node with no input, as exports write
             helper.make_node("ArgMax", ["shifted"], ["ids"], axis=axis, keepdims=keepdims, name="argmax"),
             helper.make_node("Cast", ["ids"], ["labels"], to=TensorProto.UINT8, name="labels")]  # fmt: skip
    model = helper.make_model(
        helper.make_graph(nodes, "tail", [scores], [labels]), opset_imports=[helper.make_opsetid("", opset)]
    )
    rewritten = onnx.load_from_string(model.SerializeToString())
    assert graph.argmax_as_reductions(rewritten) == 1
    assert "ArgMax" not in [n.op_type for n in rewritten.graph.node]
    onnx.checker.check_model(rewritten)
    # small integers: many ties, where ArgMax takes the first maximum
    feed = {"scores": np.random.default_rng(2).integers(0, 3, (2, 5, 7, 9)).astype(np.float32)}
    expected = _run(model.SerializeToString(), feed)
    np.testing.assert_array_equal(_run(rewritten.SerializeToString(), feed), expected)
    ov = pytest.importorskip("openvino", reason="OpenVINO not installed: pip install -e '.[openvino]'")
    compiled = ov.Core().compile_model(ov.Core().read_model(rewritten.SerializeToString()), "CPU")
    np.testing.assert_array_equal(compiled(feed)[0], expected)


def test_below_opset_14_the_pair_stays():
    model = _block_model(opset=13)
    model.graph.node[3].CopyFrom(helper.make_node("HardSigmoid", ["c0"], ["g0"], alpha=1 / 6, beta=0.5, name="g"))
    model.graph.node.insert(4, helper.make_node("Mul", ["c0", "g0"], ["h0"], name="m"))
    assert graph.fuse_hard_swish(model) == 0
    assert [n.op_type for n in model.graph.node].count("HardSigmoid") == 2


def test_onnx_runtimes_placement_keeps_a_hard_swish_input_quantized(int8_model):
    """ONNX Runtime's integer conv needs its output Q: only OpenVINO's reading frees the HardSwish input, never a placement."""
    from fcn_edge.quantize import placement

    def swish_input_producer(rewrite):
        model = onnx.load(int8_model)
        graph.fuse_hard_swish(model)
        rewrite(model)
        producer = {o: n for n in model.graph.node for o in n.output}
        return producer[next(n for n in model.graph.node if n.op_type == "HardSwish").input[0]].op_type

    assert swish_input_producer(lambda model: placement.apply(model, qdq.PLACEMENT_RULES["onnxruntime"])) == "DequantizeLinear"
    assert swish_input_producer(graph.quantize_after_hard_swish) == "Conv"


def test_reads_the_models_of_onnxs_own_test_data_unchanged():
    """Exporters' graphs the unit models above lack (Constant nodes, sequences, broadcasts): none may stop the reading,
    and a graph without the hard-swish or ArgMax patterns comes out as it went in."""
    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    models = sorted(data.rglob("*.onnx"))
    if not models:
        pytest.skip(f"this onnx wheel ships no test models under {data}")
    changed = [str(m.relative_to(data)) for m in models if graph.read(m) != onnx.load(str(m)).SerializeToString()]
    assert not changed
