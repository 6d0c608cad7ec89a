"""Exported graphs run in ONNX Runtime compute what PyTorch computes; failures write nothing.

Each export is checked here independently of the exporter's own verification: the written
file is loaded into a fresh ONNX Runtime session and compared with the PyTorch model on
synthetic scenes at three sizes (one odd, one a batch of two). Sizes have at least 10,000
pixels each, so the 99.99% agreement limit tolerates one argmax near-tie, as in the export.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fcn_edge.checkpoint import load_checkpoint, save_checkpoint
from fcn_edge.data.synthetic import CLASSES, PALETTE, render_scene
from fcn_edge.errors import FcnEdgeError
from fcn_edge.export import Tolerance, export_checkpoint, export_model
from fcn_edge.metadata import ModelMetadata, read_metadata
from fcn_edge.export.passes import TRAINED_REASON
from fcn_edge.models import ModelConfig, build_model
from fcn_edge.models.preprocess import images_to_tensor
from fcn_edge.spec import Preprocess

SIZES = ((2, 64, 96), (1, 97, 107), (1, 96, 128))  # (batch, height, width); 97x107 is odd


def make_checkpoint(path, upsample="resize_conv"):
    torch.manual_seed(0)
    config = ModelConfig(num_classes=8, upsample=upsample)
    return save_checkpoint(path, build_model(config), config, CLASSES, PALETTE, Preprocess())


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Two torch threads on a busy 2-core machine spin-wait: a 20 ms forward takes a second."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    return {mode: make_checkpoint(folder / f"{mode}.pt", mode) for mode in ("resize_conv", "deconv")}


def ort_vs_torch(onnx_path, checkpoint_path, input_format):
    """Yield (size, ONNX Runtime outputs by name, torch logits, torch labels) on fresh scenes."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.build()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for seed, (batch, height, width) in enumerate(SIZES):
        frames = np.stack([render_scene(np.random.default_rng(seed * 10 + i), (height, width))[0] for i in range(batch)])
        tensor = images_to_tensor(checkpoint.preprocess, frames)
        feed = frames if input_format == "frame" else tensor.numpy()
        got = dict(zip(names, session.run(None, {session.get_inputs()[0].name: feed})))
        with torch.no_grad():
            logits = model(tensor).numpy()
        yield (batch, height, width), got, logits, logits.argmax(1)


@pytest.mark.parametrize(
    "input_format, outputs, opset",
    [
        ("frame", ("labels",), 18),
        ("frame", ("logits",), 18),
        ("tensor", ("labels",), 17),
        ("tensor", ("logits", "labels"), 20),
    ],
)
def test_onnx_runtime_matches_torch(checkpoints, tmp_path, input_format, outputs, opset):
    path = tmp_path / "model.onnx"
    report = export_checkpoint(checkpoints["resize_conv"], path, input_format, outputs, opset, verify_sizes=SIZES)
    model = onnx.load(path)
    assert {o.domain: o.version for o in model.opset_import}[""] == opset
    assert [i.name for i in model.graph.input] == ["frame" if input_format == "frame" else "input"]
    assert [o.name for o in model.graph.output] == list(outputs)
    assert not any(n.op_type == "ConvTranspose" for n in model.graph.node) and report.convtranspose_remaining == 0
    assert not list(tmp_path.glob("*.data")) and not list(tmp_path.glob(".*"))  # one self-contained file
    assert report.max_abs_diff <= 1e-4 and report.min_agreement >= 0.9999  # logits verified even for labels-only
    assert [(c.batch, c.height, c.width) for c in report.checks] == list(SIZES)
    meta = read_metadata(path)
    assert meta.input_format == input_format and meta.outputs == list(outputs) and meta.classes == CLASSES
    for (batch, height, width), got, logits, labels in ort_vs_torch(path, checkpoints["resize_conv"], input_format):
        if "logits" in outputs:
            assert got["logits"].shape == (batch, 8, height, width)
            assert np.abs(got["logits"] - logits).max() <= 1e-4
        if "labels" in outputs:
            assert got["labels"].dtype == np.uint8 and got["labels"].shape == (batch, height, width)
            assert (got["labels"] == labels).mean() >= 0.9999


def test_bilinear_deconv_model_exports_without_convtranspose(checkpoints, tmp_path):
    """Untrained, the deconv model's upsamplers are exactly bilinear, so the graph pass replaces all three."""
    path = tmp_path / "deconv.onnx"
    report = export_checkpoint(checkpoints["deconv"], path, "tensor", ("logits",), verify_sizes=SIZES)
    assert len(report.graph_pass.replaced) == 3 and report.graph_pass.kept == []
    assert report.convtranspose_remaining == 0
    assert not any(n.op_type == "ConvTranspose" for n in onnx.load(path).graph.node)
    for _, got, logits, _ in ort_vs_torch(path, checkpoints["deconv"], "tensor"):
        assert np.abs(got["logits"] - logits).max() <= 1e-5


def test_without_graph_passes_the_deconvs_stay_and_the_report_says_why(checkpoints, tmp_path):
    report = export_checkpoint(checkpoints["deconv"], tmp_path / "m.onnx", graph_passes=False, verify_sizes=SIZES[:1])
    assert report.graph_pass is None and report.convtranspose_remaining == 3
    assert report.reasons == ["graph passes were skipped (graph_passes=False, --no-graph-passes)"]
    assert "3 remaining" in report.table()


def test_trained_deconv_is_kept_and_reported(tmp_path):
    """A deconv trained away from the bilinear kernel stays a ConvTranspose, and the report says why."""
    torch.manual_seed(0)
    config = ModelConfig(num_classes=8, upsample="deconv")
    model = build_model(config)
    with torch.no_grad():
        model.final_upsampler.weight.add_(1e-3 * torch.randn_like(model.final_upsampler.weight))
    checkpoint = save_checkpoint(tmp_path / "trained.pt", model, config, CLASSES, PALETTE, Preprocess())
    report = export_checkpoint(checkpoint, tmp_path / "trained.onnx", verify_sizes=SIZES[:1])
    assert report.convtranspose_remaining == 1 and len(report.graph_pass.replaced) == 2
    assert len(report.reasons) == 1 and TRAINED_REASON in report.reasons[0]
    assert TRAINED_REASON in report.table()


class FrozenSize(nn.Module):
    """Scores at stride 4, resized back to ``int(x.shape)``: the classic tracing mistake.

    ``int()`` turns the traced input size into a constant, so the exported graph always
    answers at the traced size while PyTorch answers at the input's size. Nothing is faked:
    this is a real model whose ONNX export really differs from PyTorch at other sizes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Conv2d(3, 8, 3, stride=4, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.score(x), size=(int(x.shape[2]), int(x.shape[3])), mode="bilinear")


def meta_for(model_classes=CLASSES, outputs=("labels",)):
    return ModelMetadata(list(model_classes), list(PALETTE), Preprocess(), "frame", list(outputs), 4, "0" * 64, {})


def test_an_export_that_does_not_verify_raises_with_the_figures_and_writes_nothing(tmp_path):
    with pytest.raises(FcnEdgeError) as error:
        export_model(FrozenSize(), meta_for(), tmp_path / "frozen.onnx", verify_sizes=SIZES)
    message = str(error.value)
    assert "\n" not in message and "does not compute what PyTorch does" in message
    assert "97x107 batch 1: logits shape" in message and "nothing written" in message
    assert list(tmp_path.iterdir()) == []


def test_an_impossible_tolerance_fails_on_figures(checkpoints, tmp_path):
    """ONNX Runtime and PyTorch sum in different orders, so a zero tolerance cannot hold on a real model."""
    with pytest.raises(FcnEdgeError, match=r"max \|logit diff\| \d\.\d\de-\d\d"):
        export_checkpoint(
            checkpoints["resize_conv"], tmp_path / "m.onnx", verify_sizes=SIZES[1:2], tolerance=Tolerance(max_abs_diff=0.0)
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"opset": 16}, "opset 16 is not supported"),
        ({"opset": 21}, "opset 21 is not supported: choose 17..20"),
        ({"input_format": "rgb"}, "input format 'rgb'"),
        ({"outputs": ("scores",)}, "outputs ['scores']"),
        ({"verify_sizes": ()}, "no verification sizes"),
    ],
)
def test_bad_arguments_are_user_errors(checkpoints, tmp_path, kwargs, fragment):
    with pytest.raises(FcnEdgeError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        export_checkpoint(checkpoints["resize_conv"], tmp_path / "m.onnx", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_labels_need_at_most_256_classes(tmp_path):
    with pytest.raises(FcnEdgeError, match="300 classes do not fit the uint8 labels"):
        export_model(FrozenSize(), meta_for([str(i) for i in range(300)]), tmp_path / "m.onnx")
