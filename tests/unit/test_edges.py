"""Guided refinement and multi-scale inference: exported, verified and TensorRT-parsable like the plain graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from fcn_edge.backends.tensorrt import compat, opset
from fcn_edge.data.synthetic import CLASSES, PALETTE
from fcn_edge.export import export_model
from fcn_edge.metadata import ModelMetadata, read_metadata
from fcn_edge.models import ModelConfig, build_model
from fcn_edge.models.edges import EdgeOptions
from fcn_edge.models.multiscale import MultiScale
from fcn_edge.models.refine import GuidedParams, GuidedRefine
from fcn_edge.quantize.score_tail import score_tail
from fcn_edge.spec import Preprocess


def export_with(options: EdgeOptions, path) -> onnx.ModelProto:
    torch.manual_seed(0)
    config = ModelConfig(num_classes=len(CLASSES))
    meta = ModelMetadata(
        CLASSES, PALETTE, Preprocess(), "frame", ["labels"], 32, "0" * 64, {**config.to_dict(), "edges": options.to_dict()}
    )
    report = export_model(options.wrap(build_model(config)), meta, path, verify_sizes=((1, 96, 128),))
    assert all(c.agreement >= 0.9999 for c in report.checks)
    return onnx.load(str(path))


def test_refined_graph_verifies_passes_the_tensorrt_check_and_records_its_parameters(tmp_path):
    params = GuidedParams(radius=2, eps=0.05, subsample=4)
    model = export_with(EdgeOptions(refine=params), tmp_path / "refined.onnx")
    _parses_on_every_line(tmp_path / "refined.onnx", tmp_path)
    assert read_metadata(model).model_config["edges"]["refine"] == params.to_dict()
    assert {"AveragePool", "Resize"} <= {n.op_type for n in model.graph.node}
    tail = set(score_tail(model))  # what the quantizer keeps float: the whole filter, the guide branch included
    assert {n.name for n in model.graph.node if n.op_type in ("AveragePool", "Softmax", "Div", "ReduceMean")} <= tail
    assert not any(n.op_type == "Conv" for n in model.graph.node if n.name in tail)


def test_a_plain_graph_has_no_score_tail(frame_model):
    assert score_tail(onnx.load(str(frame_model))) == []


def test_multiscale_flipped_graph_passes_the_tensorrt_check(tmp_path):
    export_with(EdgeOptions(scales=(0.75, 1.0), flip=True, refine=GuidedParams()), tmp_path / "ms.onnx")
    _parses_on_every_line(tmp_path / "ms.onnx", tmp_path)


def _parses_on_every_line(path, tmp_path):
    """10.x/11.x parse the opset-18 export; 8.x (opset 17 at most) parses the copy an 8.x build converts it to."""
    assert {line: [p.rule for p in found] for line, found in compat.report(path).items()} == {"8": ["opset"], "10": [], "11": []}
    assert compat.report(opset.for_line(path, "8", tmp_path / "opset17"), ("8",)) == {"8": []}


def test_multiscale_of_one_scale_is_the_model_and_flip_averages_the_mirrored_pass():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3)).eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        single = MultiScale(model, (1.0,))(x)
        flipped = MultiScale(model, (1.0,), flip=True)(x)
        three = MultiScale(model, (0.5, 1.0, 1.5))(x)
        logits = model(x)
    assert torch.allclose(single, logits.log_softmax(1), atol=1e-5)
    mirrored = model(x.flip(3)).flip(3).softmax(1)
    assert torch.allclose(flipped.exp(), (logits.softmax(1) + mirrored) / 2, atol=1e-5)
    assert three.shape == logits.shape and torch.allclose(three.exp().sum(1), torch.ones(1, 40, 56), atol=1e-5)


def test_guided_filter_snaps_a_blurred_edge_to_the_guide():
    """Scores blurred across a sharp step in the frame come back with the edge on the step."""
    x = torch.zeros(1, 3, 64, 64)
    x[..., 30:] = 2.0  # the frame's edge at column 30
    column = torch.arange(64.0)
    blurred = (column - 34) / 6  # the model's edge at column 34, smeared over ~12 px
    logits = torch.stack([-blurred, blurred])[:, None, :].expand(1, 2, 64, 64)
    refined = GuidedRefine(lambda _: logits, GuidedParams(radius=2, eps=1e-3, subsample=4))(x)
    assert (logits.argmax(1)[0, 0] == 1).nonzero()[0].item() == 35
    assert (refined.argmax(1)[0, 0] == 1).nonzero()[0].item() == 30


def test_dense_crf_labels_follow_the_colour_edge():
    pytest.importorskip("pydensecrf")
    from fcn_edge.crf import dense_crf

    image = np.zeros((64, 128, 3), np.uint8)
    image[:, 60:] = 255
    scores = np.zeros((2, 64, 128), np.float32)
    scores[0, :, :66], scores[1, :, 66:] = 1.5, 1.5  # the model's edge 6 px right of the image's
    labels = dense_crf(image, scores)
    assert (labels[:, :60] == 0).all() and (labels[:, 60:] == 1).all()


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        GuidedParams(radius=0)
    with pytest.raises(ValueError):
        MultiScale(torch.nn.Identity(), ())
