"""The bilinear ConvTranspose -> Pad/Resize/Slice graph pass, on standalone one-node graphs run in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from fcn_edge.export.passes import TRAINED_REASON, replace_bilinear_deconvs
from fcn_edge.models.upsample import bilinear_kernel


def deconv_graph(weight: np.ndarray, stride: int, pad: int, bias: np.ndarray | None = None) -> onnx.ModelProto:
    """One ConvTranspose node with constant weights, dynamic batch/height/width, as an exporter writes it."""
    channels = weight.shape[1]
    initializers = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias is not None:
        initializers.append(numpy_helper.from_array(bias.astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node(
        "ConvTranspose", inputs, ["y"], name="up", kernel_shape=list(weight.shape[2:]), strides=[stride, stride], pads=[pad] * 4
    )
    graph = helper.make_graph(
        [node],
        "deconv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, "H2", "W2"])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("factor", [2, 8])
def test_bilinear_deconv_becomes_an_exact_resize_at_odd_and_even_sizes(factor):
    weight = bilinear_kernel(3, 2 * factor).numpy()
    rewritten, report = replace_bilinear_deconvs(deconv_graph(weight, factor, factor // 2))
    onnx.checker.check_model(rewritten, full_check=True)
    assert [n.op_type for n in rewritten.graph.node] == ["Pad", "Resize", "Slice"]
    assert report.replaced == [("up", factor)] and report.kept == []
    assert not any(init.name == "w" for init in rewritten.graph.initializer)
    rng = np.random.default_rng(factor)
    for shape in [(1, 3, 5, 7), (2, 3, 8, 6), (1, 3, 1, 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        expected = torch.conv_transpose2d(
            torch.from_numpy(x), torch.from_numpy(weight), stride=factor, padding=factor // 2
        ).numpy()
        got = run(rewritten, x)
        assert got.shape == expected.shape == (shape[0], 3, shape[2] * factor, shape[3] * factor)
        assert np.abs(got - expected).max() <= 1e-5


def test_a_zero_bias_is_still_bilinear():
    weight = bilinear_kernel(2, 4).numpy()
    _, report = replace_bilinear_deconvs(deconv_graph(weight, 2, 1, bias=np.zeros(2)))
    assert report.replaced == [("up", 2)]


@pytest.mark.parametrize(
    "weight, stride, pad, bias, reason",
    [
        (
            bilinear_kernel(3, 4).numpy() + 1e-3 * np.random.default_rng(0).standard_normal((3, 3, 4, 4)),
            2,
            1,
            None,
            TRAINED_REASON,
        ),
        (bilinear_kernel(3, 4).numpy(), 2, 1, np.ones(3), "non-zero bias"),
        (bilinear_kernel(3, 4).numpy(), 2, 0, None, "pads="),
    ],
    ids=["trained", "bias", "geometry"],
)
def test_anything_but_the_fixed_bilinear_upsampler_is_kept_with_the_reason(weight, stride, pad, bias, reason):
    model = deconv_graph(weight, stride, pad, bias)
    rewritten, report = replace_bilinear_deconvs(model)
    assert [n.op_type for n in rewritten.graph.node] == ["ConvTranspose"]
    assert report.replaced == [] and len(report.kept) == 1
    name, why = report.kept[0]
    assert name == "up" and reason in why
    assert any(reason in line for line in report.lines())
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(run(rewritten, x), run(model, x))
