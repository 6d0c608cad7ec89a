"""ONNX metadata_props: what later stages read instead of flags."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from fcn_edge.errors import FcnEdgeError
from fcn_edge.metadata import FORMAT, ModelMetadata, read_metadata, write_metadata
from fcn_edge.spec import Preprocess


def identity_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


META = ModelMetadata(
    classes=["background", "disc", "ring"],
    palette=[(0, 0, 0), (255, 38, 38), (38, 161, 255)],
    preprocess=Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), channel_order="BGR"),
    input_format="frame",
    outputs=["labels"],
    output_stride=32,
    source_sha256="ab" * 32,
    model_config={"num_classes": 3, "backbone": "edge_resnet", "head": "fcn8s"},
)


def test_metadata_round_trips_through_a_file(tmp_path):
    model = identity_model()
    onnx.helper.set_model_props(model, {"author": "someone", "fcn_edge.classes": "stale"})
    write_metadata(model, META)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path)
    assert read_metadata(path) == META
    assert read_metadata(onnx.load(path)) == META
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert props["author"] == "someone"  # other keys are kept, ours replaced
    assert props["fcn_edge.format"] == FORMAT
    assert sum(p.key == "fcn_edge.classes" for p in onnx.load(path).metadata_props) == 1


def test_a_model_without_our_keys_is_a_user_error_naming_the_file(tmp_path):
    path = tmp_path / "foreign.onnx"
    onnx.save_model(identity_model(), path)
    with pytest.raises(FcnEdgeError, match="foreign.onnx has no fcn_edge metadata"):
        read_metadata(path)
    with pytest.raises(FcnEdgeError, match="does not exist"):
        read_metadata(tmp_path / "missing.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(FcnEdgeError, match="text.onnx is not an ONNX model"):
        read_metadata(tmp_path / "text.onnx")


def test_a_newer_format_is_refused(tmp_path):
    model = identity_model()
    write_metadata(model, META)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "fcn_edge.format": "fcn_edge.onnx/9"})
    with pytest.raises(FcnEdgeError, match="fcn_edge.onnx/9"):
        read_metadata(model)
