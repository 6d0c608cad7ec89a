"""A foreign model given frame input and labels output (fcn_edge.compile.foreign), and nodes named for the quantizer."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_edge.compile import foreign
from fcn_edge.quantize.qdq import name_nodes
from fcn_edge.spec import Preprocess

PREPROCESS = Preprocess((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def one_channel(layout: str = "nchw") -> onnx.ModelProto:
    """Float input -> one 1x1 conv -> [N,1,H,W] logits (NHWC input transposed inside, as TF conversions do)."""
    weight = numpy_helper.from_array(np.array([1.0, -2.0, 0.5], np.float32).reshape(1, 3, 1, 1), "w")
    nodes = [helper.make_node("Conv", ["x" if layout == "nchw" else "t", "w"], ["logit"])]
    shape = ["n", 3, "h", "w"] if layout == "nchw" else ["n", "h", "w", 3]
    if layout != "nchw":
        nodes.insert(0, helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]))
    output = helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["n", 1, "h", "w"])
    if layout == "nhwc-both":  # a TFLite conversion: the output transposed back to [N,H,W,1]
        nodes[-1].output[0] = "logit_nchw"
        nodes.append(helper.make_node("Transpose", ["logit_nchw"], ["logit"], perm=[0, 2, 3, 1]))
        output = helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["n", "h", "w", 1])
    graph = helper.make_graph(nodes, "binary", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)], [output], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, feed: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: feed})[0]


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nhwc-both"])
def test_logits_thresholded_at_a_probability_give_the_labels_of_sigmoid_above_it(layout):
    frames = np.random.default_rng(0).integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    model = one_channel(layout)
    rule = foreign.Binary("logits", 0.7, detected=False)
    input_format = "tensor" if layout == "nchw" else "tensor-nhwc"
    assert foreign.channel_axis(model.graph.output[0], input_format) == (3 if layout == "nhwc-both" else 1)
    wrapped = foreign.frame_model(model, input_format, PREPROCESS, rule, None)
    onnx.checker.check_model(wrapped, full_check=True)
    tensor = PREPROCESS.frames_to_array(frames)
    logits = run(model, tensor if layout == "nchw" else tensor.transpose(0, 2, 3, 1).copy())
    logits = logits[..., 0] if layout == "nhwc-both" else logits[:, 0]
    labels = run(wrapped, frames)
    assert labels.dtype == np.uint8 and labels.shape == (2, 8, 12)
    expected = 1 / (1 + np.exp(-logits)) > 0.7
    assert 0 < expected.mean() < 1 and np.array_equal(labels, expected)


def test_a_sigmoid_output_is_read_as_probabilities_and_anything_else_needs_the_flag(tmp_path):
    model = one_channel()
    with pytest.raises(Exception, match="--output-activation logits"):
        foreign.binary(model, tmp_path / "m.onnx", None, None)
    model.graph.node.append(helper.make_node("Sigmoid", ["logit"], ["prob"]))
    model.graph.output[0].name = "prob"
    rule = foreign.binary(model, tmp_path / "m.onnx", None, None)
    assert rule == foreign.Binary("sigmoid", 0.5, detected=True) and rule.on_output == 0.5
    model = one_channel("nhwc-both")  # the Sigmoid before the transpose back to NHWC still makes probabilities
    model.graph.node.insert(
        1 + [n.output[0] for n in model.graph.node].index("logit_nchw"),
        helper.make_node("Sigmoid", ["logit_nchw"], ["prob_nchw"]),
    )
    model.graph.node[-1].input[0] = "prob_nchw"
    assert foreign.binary(model, tmp_path / "m.onnx", None, None).detected


def test_every_node_gets_a_unique_stable_name():
    nodes = [helper.make_node("Relu", ["a"], ["b"]), helper.make_node("Relu", ["b"], ["c"], name="x"),
             helper.make_node("Relu", ["c"], ["d"], name="x"), helper.make_node("Relu", ["d"], ["e"], name="Relu_0")]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [], [])
    assert name_nodes(graph) == 2
    names = [n.name for n in graph.node]
    assert len(set(names)) == 4 and "" not in names and names[2:] == ["x", "Relu_0"]
    assert name_nodes(graph) == 0


def test_channels_last_scores_are_verified_as_channels_first():
    from fcn_edge.compile.verify import logits_twin

    frames = np.random.default_rng(1).integers(0, 256, (1, 8, 12, 3), dtype=np.uint8)
    wrapped = foreign.frame_model(one_channel("nhwc-both"), "tensor-nhwc", PREPROCESS, foreign.Binary("logits", 0.5, False), None)
    session = ort.InferenceSession(logits_twin(wrapped).SerializeToString(), providers=["CPUExecutionProvider"])
    labels, scores = session.run(None, {session.get_inputs()[0].name: frames})
    assert scores.shape == (1, 1, 8, 12) and np.array_equal(labels[0], (scores[0, 0] > 0).astype(np.uint8))
