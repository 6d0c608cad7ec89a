"""Learned weight rounding (fcn_edge.quantize.rounding): patches equal the conv, the learned rounding beats nearest
on images it did not see, and the quantizer writes exactly the integers it chose."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_edge.errors import FcnEdgeError
from fcn_edge.quantize import qdq, rounding

torch = pytest.importorskip("torch", reason="learned rounding needs torch (the [train] extra)")

CASES = {  # name: (op, weight shape, attributes, input shape)
    "3x3 stride 2, TensorFlow SAME pads": ("Conv", (6, 4, 3, 3), {"strides": [2, 2], "pads": [0, 0, 1, 1]}, (2, 4, 9, 10)),
    "depthwise 5x5": ("Conv", (5, 1, 5, 5), {"group": 5, "pads": [2, 2, 2, 2]}, (2, 5, 8, 7)),
    "transposed 2x2 stride 2": ("ConvTranspose", (4, 3, 2, 2), {"strides": [2, 2]}, (2, 4, 5, 6)),
}


def one_conv(op: str, weight: np.ndarray, attributes: dict, shape: tuple) -> onnx.ModelProto:
    node = helper.make_node(op, ["x", "w"], ["y"], name="conv", kernel_shape=list(weight.shape[2:]), **attributes)
    graph = helper.make_graph(
        [node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(weight, "w")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def rows_of(op: str, y: np.ndarray, weight: np.ndarray, attributes: dict) -> np.ndarray:
    """The conv's output laid out like the product on patches: [groups, rows, outputs]."""
    if op == "ConvTranspose":
        b, co, h2, w2 = y.shape
        kh, kw = weight.shape[2:]
        return y.reshape(b, co, h2 // kh, kh, w2 // kw, kw).transpose(0, 2, 4, 1, 3, 5).reshape(1, -1, co * kh * kw)
    if attributes.get("group", 1) > 1:
        return y.transpose(1, 0, 2, 3).reshape(y.shape[1], -1, 1)
    return y.transpose(0, 2, 3, 1).reshape(1, -1, y.shape[1])


@pytest.mark.parametrize("case", list(CASES))
def test_patches_times_weights_are_the_conv_onnx_runtime_computes(case):
    op, wshape, attributes, xshape = CASES[case]
    rng = np.random.default_rng(0)
    weight, x = rng.standard_normal(wshape).astype(np.float32), rng.standard_normal(xshape).astype(np.float32)
    model = one_conv(op, weight, attributes, xshape)
    node = model.graph.node[0]
    assert rounding.unsupported(node, weight) is None
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    total = rounding._row_count(node, x, weight)
    patches, to_groups, from_groups = rounding._patches(torch, node, x, weight, torch.arange(total))
    w = to_groups(torch.from_numpy(weight))
    assert torch.equal(from_groups(w), torch.from_numpy(weight))
    got = torch.bmm(patches, w.transpose(1, 2)).numpy()
    np.testing.assert_allclose(got, rows_of(op, y, weight, attributes), atol=1e-4)


def test_convs_it_cannot_write_as_patches_are_named_with_the_reason():
    grouped = one_conv("Conv", np.zeros((4, 2, 3, 3), np.float32), {"group": 2}, (1, 4, 8, 8))
    overlapping = one_conv("ConvTranspose", np.zeros((4, 3, 3, 3), np.float32), {"strides": [2, 2]}, (1, 4, 8, 8))
    assert "grouped" in rounding.unsupported(grouped.graph.node[0], np.zeros((4, 2, 3, 3)))
    assert "overlapping" in rounding.unsupported(overlapping.graph.node[0], np.zeros((4, 3, 3, 3)))


class Small(torch.nn.Module):
    """First conv, depthwise, pointwise, transposed: the kinds of MediaPipe's selfie model, small."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.depthwise = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pointwise = torch.nn.Conv2d(16, 24, 1)
        self.up = torch.nn.ConvTranspose2d(24, 2, 2, stride=2)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return self.up(torch.relu(self.pointwise(torch.relu(self.depthwise(x)))))


def feeds(count: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(0, 1, (1, 3, 24, 24)).astype(np.float32)} for _ in range(count)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rounding")
    torch.onnx.export(Small().eval(), (torch.zeros(1, 3, 24, 24),), str(tmp / "small.onnx"), input_names=["x"],
                      output_names=["y"], dynamo=False, opset_version=17)  # fmt: skip
    qdq.prepare(tmp / "small.onnx", tmp / "prepared.onnx")
    return tmp / "prepared.onnx"


def outputs(path, data) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, f)[0] for f in data])


def nearest_model(prepared, out, levels: int = 64):
    """The prepared model with every quantized conv's weight rounded to the nearest 7-bit level."""
    model = onnx.load(str(prepared))
    convs = {n.input[1]: n.op_type for n in model.graph.node if n.name in qdq.quantizable_nodes(model)}
    for tensor in model.graph.initializer:
        if tensor.name in convs:
            w = numpy_helper.to_array(tensor)
            axis = 1 if convs[tensor.name] == "ConvTranspose" else 0
            amax = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(1)
            scale = (amax / levels).reshape([-1 if i == axis else 1 for i in range(4)])
            tensor.CopyFrom(numpy_helper.from_array((np.round(w / scale) * scale).astype(np.float32), tensor.name))
    onnx.save(model, out)
    return out


def test_learned_rounding_beats_nearest_on_unseen_images_and_the_quantizer_keeps_its_integers(prepared, tmp_path):
    rounded = tmp_path / "rounded.onnx"
    done = rounding.learn_rounding(prepared, rounded, feeds(4, seed=1), "onnxruntime", progress=False)
    model = onnx.load(str(prepared))
    convs = [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert done.convs == convs and not done.skipped and not done.out_of_time  # all four kinds, in graph order
    assert all(learned <= nearest for nearest, learned in done.error.values())
    assert any(learned < 0.8 * nearest for nearest, learned in done.error.values())

    unseen, reference = feeds(4, seed=2), outputs(prepared, feeds(4, seed=2))
    learned_error = np.mean((outputs(rounded, unseen) - reference) ** 2)
    nearest_error = np.mean((outputs(nearest_model(prepared, tmp_path / "nearest.onnx"), unseen) - reference) ** 2)
    assert learned_error < 0.8 * nearest_error

    ranges_model = tmp_path / "int8.onnx"  # the quantizer turns the rounded float weights back into the same integers
    from fcn_edge.quantize.statistics import collect_ranges

    qdq.quantize(rounded, ranges_model, collect_ranges(onnx.load(str(rounded)), unseen, "max", progress=False))
    int8 = onnx.load(str(ranges_model))
    constants = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    float_weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(rounded)).graph.initializer}
    checked = 0
    for node in int8.graph.node:
        if node.op_type == "DequantizeLinear" and constants.get(node.input[0], np.zeros(0)).dtype == np.int8:
            q, scale = constants[node.input[0]], constants[node.input[1]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            source = float_weights[node.input[0].removesuffix("_quantized")]
            shape = [-1 if i == axis else 1 for i in range(q.ndim)]
            np.testing.assert_allclose(q * scale.reshape(shape), source, rtol=1e-5, atol=1e-7)
            assert np.abs(q).max() <= 64  # 7-bit levels on ONNX Runtime's placement
            checked += 1
    assert checked == len(convs)


def test_out_of_time_keeps_nearest_rounding_and_without_torch_the_error_says_what_to_install(prepared, tmp_path, monkeypatch):
    done = rounding.learn_rounding(prepared, tmp_path / "r.onnx", feeds(2, seed=1), seconds=0, progress=False)
    assert done.out_of_time and not done.convs and set(done.skipped.values()) == {"out of time"}
    original = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(prepared)).graph.initializer}
    for tensor in onnx.load(str(tmp_path / "r.onnx")).graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(tensor), original[tensor.name])

    monkeypatch.setitem(sys.modules, "torch", None)  # the import fails, as on a deploy box without the [train] extra
    assert rounding.torch_or_none() is None
    with pytest.raises(FcnEdgeError, match=r"needs torch: pip install 'fcn_edge\[train\]'"):
        rounding.learn_rounding(prepared, tmp_path / "r2.onnx", feeds(2, seed=1), progress=False)
