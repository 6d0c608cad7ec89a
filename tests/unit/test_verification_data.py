"""Which images a build calibrates and verifies on: data specs, the default rules, samples at native or fixed size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from fcn_edge.compile import verification_data, verify
from fcn_edge.compile.source import SourceModel
from fcn_edge.data.palette import default_palette
from fcn_edge.data.synthetic import CLASSES as SYNTHETIC_CLASSES
from fcn_edge.data.voc import CLASSES as VOC_CLASSES
from fcn_edge.errors import FcnEdgeError
from fcn_edge.spec import Preprocess
from fixtures.voc_photos import make_voc_photos


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_voc_photos(tmp_path_factory.mktemp("voc") / "VOC", train=6, val=3)


def source(classes: list[str], origin: dict | None = None, ours: bool = False) -> SourceModel:
    return SourceModel(
        Path("m.onnx"), "m", "x", "tensor", Preprocess(), classes, default_palette(len(classes)), ["out"],
        metadata=object() if ours else None, origin=origin or {},
    )  # fmt: skip


def test_data_specs_parse_and_bad_ones_name_the_flag():
    assert verification_data.parse_spec(None, "--val-data") is None
    assert verification_data.parse_spec("voc:/data/VOC2012", "--val-data") == verification_data.DataSpec(
        "voc", Path("/data/VOC2012")
    )
    assert str(verification_data.parse_spec("synthetic", "--val-data")) == "synthetic"
    for text, fragment in [("voc", "names no folder"), ("imagenet:/x", "unknown dataset"), ("synthetic:/x", "need no folder")]:
        with pytest.raises(FcnEdgeError, match=fragment) as error:
            verification_data.parse_spec(text, "--calib-data")
        assert str(error.value).startswith("--calib-data")
    assert (
        verification_data.evenly_spaced(10, 3) == [0, 4, 9]
        and verification_data.evenly_spaced(3, 5) == [0, 1, 2]
        and verification_data.evenly_spaced(4, 0) == [0, 1, 2, 3]
    )


def test_default_verification_follows_the_rules(voc, tmp_path):
    spec = verification_data.DataSpec("voc", voc)
    assert verification_data.choose(source(VOC_CLASSES), spec, "val", None).why == "--val-data"
    trained_voc = {"trained_on": {"dataset": "voc", "root": str(voc), "val_split": "val"}}
    plan = verification_data.choose(source(VOC_CLASSES, trained_voc, ours=True), None, "val", None)
    assert (plan.kind, plan.data, plan.split) == ("dataset", spec, "val")
    gone = {"trained_on": {"dataset": "voc", "root": str(tmp_path / "moved"), "val_split": "val"}}
    plan = verification_data.choose(source(VOC_CLASSES, gone, ours=True), None, "val", None)
    assert plan.kind == "holdout" and "is not here" in plan.why
    synthetic = {"trained_on": {"dataset": "synthetic", "root": None, "val_split": "val"}}
    assert verification_data.choose(source(["a", "b"], synthetic, ours=True), None, "val", None).kind == "synthetic"
    assert (
        verification_data.choose(source(SYNTHETIC_CLASSES, ours=True), None, "val", None).kind == "synthetic"
    )  # the shipped default
    foreign = [f"class_{i}" for i in range(21)]
    assert verification_data.choose(source(foreign), None, "val", spec).why == "the val split of --calib-data"
    assert verification_data.choose(source(foreign[:3]), None, "val", spec).kind == "holdout"  # not its classes: agreement only


def test_dataset_samples_at_native_or_fixed_size_and_checked_classes(voc):
    plan = verification_data.VerificationChoice("dataset", "--val-data", verification_data.DataSpec("voc", voc), "val")
    native = verification_data.samples(plan, source(VOC_CLASSES, ours=True), 0, 0, (256, 512), [])
    assert len(native) == 3 and len({s.frame.shape for s in native}) > 1  # VOC-like: every image its own size
    assert all(s.mask.shape == s.frame.shape[:2] and 255 in s.mask for s in native)
    assert native[0].name == "voc:val/val_0000.jpg"
    assert "resized" not in plan.describe(native, 0)
    foreign = source([f"c{i}" for i in range(21)])
    fitted = verification_data.samples(plan, foreign, 0, 0, (256, 512), [])  # a foreign dynamic model: multiples of 32
    assert all(s.frame.shape[0] % 32 == 0 and s.frame.shape[1] % 32 == 0 and s.mask.shape == s.frame.shape[:2] for s in fitted)
    assert "resized to multiples of 32" in plan.describe(fitted, 0)
    foreign.fixed_size = (64, 96)
    fixed = verification_data.samples(plan, foreign, 2, 0, (64, 96), [])
    assert len(fixed) == 2 and all(s.frame.shape == (64, 96, 3) and s.mask.shape == (64, 96) for s in fixed)
    assert set(np.unique(fixed[0].mask)) <= set(np.unique(native[0].mask))  # nearest: no invented labels
    assert "2 labelled images of voc:" in plan.describe(fixed, 0) and "resized to the model's fixed input" in plan.describe(
        fixed, 0
    )
    with pytest.raises(FcnEdgeError, match="the model has 8 classes, .* has 21"):
        verification_data.samples(plan, source(SYNTHETIC_CLASSES, ours=True), 0, 0, (64, 96), [])
    with pytest.raises(FcnEdgeError, match="nothing to verify on"):
        verification_data.samples(
            verification_data.VerificationChoice("holdout", "no labels"), source(["a", "b"]), 0, 0, (64, 96), []
        )


def test_calibration_frames_from_a_datasets_train_split(voc):
    found = verification_data.calibration_set(Path("unused"), verification_data.DataSpec("voc", voc), 64)
    assert [p.name for p in found.files] == [f"train_{i:04d}.jpg" for i in range(6)]
    assert [p.name for p in found.holdout] == ["train_0004.jpg"]
    assert len(verification_data.calibration_set(Path("unused"), verification_data.DataSpec("voc", voc), 3).files) == 3
    with pytest.raises(FcnEdgeError, match="--calib-data voc:.*nowhere"):
        verification_data.calibration_set(Path("unused"), verification_data.DataSpec("voc", voc / "nowhere"), 64)


def test_outputs_that_are_not_per_pixel_scores_are_one_line_errors(tmp_path):
    """A graph without its final upsampling answers with a coarse grid: no label for most pixels."""
    weights = onnx.numpy_helper.from_array(np.ones((21, 3, 4, 4), np.float32), "w")
    conv = onnx.helper.make_node("Conv", ["x", "w"], ["out"], strides=[4, 4])
    graph = onnx.helper.make_graph(
        [conv], "coarse", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 64, 96])],
        [onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 21, 16, 24])], [weights],
    )  # fmt: skip
    path = tmp_path / "coarse.onnx"
    onnx.save_model(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    model = source([f"c{i}" for i in range(21)])
    model.path = path
    sample = verify.Sample("frame", np.zeros((64, 96, 3), np.uint8), None)
    with pytest.raises(FcnEdgeError, match="64x96 input with 16x24 labels: a build needs per-pixel class scores"):
        verify.reference(model, [sample], progress=False)
