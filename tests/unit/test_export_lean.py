"""The full-resolution passes: preprocessing folded into the first conv, labels by interpolation phase."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_edge.export.lean import LeanReport, make_lean, phase_taps
from fcn_edge.quantize.label_ops import label_convs


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def labels_graph(classes: int, factor: int, mode: str = "linear") -> onnx.ModelProto:
    """Scores -> Resize xfactor -> ArgMax -> Cast float -> Cast uint8, as the export writes the labels."""
    nodes = [
        helper.make_node(
            "Resize", ["x", "", "scales"], ["up"], name="resize", mode=mode, coordinate_transformation_mode="half_pixel"
        ),
        helper.make_node("ArgMax", ["up"], ["index"], axis=1, keepdims=0),
        helper.make_node("Cast", ["index"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["as_float"], ["labels"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "labels",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", classes, "H", "W"])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H2", "W2"])],
        [numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), "scales")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return onnx.shape_inference.infer_shapes(model)


def test_phase_taps_are_the_resize_weights():
    taps = phase_taps(8)
    assert np.allclose(taps.sum(1), 1) and np.allclose(taps[0], [0.4375, 0.5625, 0]) and np.allclose(taps[7], [0, 0.5625, 0.4375])


@pytest.mark.parametrize("classes, factor", [(8, 8), (3, 2), (5, 4)])
def test_labels_by_phase_equal_resize_then_argmax(classes, factor):
    model = labels_graph(classes, factor)
    report = LeanReport()
    lean = make_lean(model, report)
    assert report.phased == [("resize", factor)] and "Resize" not in [n.op_type for n in lean.graph.node]
    assert label_convs(lean) == ["resize_phase_conv"]  # the quantizer keeps it float
    rng = np.random.default_rng(classes)
    for shape in [(1, classes, 5, 7), (2, classes, 8, 6), (1, classes, 1, 1)]:
        x = (3 * rng.standard_normal(shape)).astype(np.float32)
        expected, got = run(model, x), run(lean, x)
        assert got.shape == expected.shape and got.dtype == np.uint8 and np.array_equal(got, expected)


def test_a_nearest_resize_is_kept_with_the_reason():
    report = LeanReport()
    lean = make_lean(labels_graph(4, 8, mode="nearest"), report)
    assert report.phased == [] and "only linear half_pixel" in report.kept[0][1]
    assert [n.op_type for n in lean.graph.node][0] == "Resize"


def preprocess_graph(pad: bool) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """uint8 NHWC frame -> Cast -> Transpose -> affine 1x1 conv -> (zero Pad) -> 3x3/2 conv, as the export writes it."""
    rng = np.random.default_rng(0)
    swap = np.eye(3)[::-1] / (255 * np.array([0.229, 0.224, 0.225]))[:, None]
    weights = {
        "affine_w": swap.reshape(3, 3, 1, 1).astype(np.float32),
        "affine_b": (-np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225])).astype(np.float32),
        "conv_w": rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
        "pads": np.array([0, 0, 0, 0, 0, 0, 3, 5], np.int64),
    }
    nodes = [
        helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "affine_w", "affine_b"], ["n"], name="affine", kernel_shape=[1, 1]),
        *([helper.make_node("Pad", ["n", "pads"], ["p"], mode="constant")] if pad else []),
        helper.make_node(
            "Conv", ["p" if pad else "n", "conv_w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1] * 4, strides=[2, 2]
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "pre",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in weights.items() if pad or k != "pads"],
    )
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])), weights


@pytest.mark.parametrize("pad", [True, False], ids=["zero-padded", "direct"])
def test_preprocessing_folds_into_the_first_conv_exactly_at_the_borders(pad):
    model, _ = preprocess_graph(pad)
    report = LeanReport()
    lean = make_lean(model, report)
    assert report.folded == ["affine -> conv"]
    ops = [n.op_type for n in lean.graph.node]
    assert ops.count("Conv") == 1 and "BatchNormalization" in ops
    x = np.random.default_rng(1).integers(0, 256, (2, 13, 17, 3), dtype=np.uint8)
    expected, got = run(model, x), run(lean, x)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("reader, reason", [("Relu", "feeds something other than one"), ("output", "is a graph output")])
def test_an_affine_conv_with_a_second_reader_is_kept(reader, reason):
    model, _ = preprocess_graph(pad=False)
    if reader == "output":
        model.graph.output.append(helper.make_tensor_value_info("n", TensorProto.FLOAT, None))
    else:
        model.graph.node.append(helper.make_node("Relu", ["n"], ["r"]))
        model.graph.output.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    report = LeanReport()
    make_lean(model, report)
    assert report.folded == [] and reason in report.kept[0][1]
