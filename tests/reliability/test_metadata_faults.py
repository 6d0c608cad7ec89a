"""Hand-edited model metadata, sidecars and checkpoints (issue 22): palette entries out of range or of the wrong
length, deeply nested JSON, fields of the wrong type. A model is one line (the stream crashed in ``palette_lut`` with
OverflowError/ValueError, or with RecursionError); a sidecar beside an ONNX model is only a hint to the stream, which
runs; export refuses metadata that would fail its own check."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest
import torch

from conftest import ROOT
from faults import frame_segmenter, one_error_line, run_main
from fcn_edge.checkpoint import save_checkpoint
from fcn_edge.errors import FcnEdgeError
from fcn_edge.metadata import FORMAT, PREFIX, ModelMetadata, read_metadata, write_metadata
from fcn_edge.models import ModelConfig, build_model
from fcn_edge.spec import Preprocess
from fcn_edge.stream.__main__ import main as stream_main

CLASSES = ["background", "road", "car"]
GOOD = {"classes": CLASSES, "palette": [[0, 0, 0], [128, 64, 128], [0, 0, 142]], "preprocess": Preprocess().to_dict(),
        "input_format": "frame", "outputs": ["labels"], "output_stride": 32, "source_sha256": "0" * 64, "model_config": {}}  # fmt: skip
DEEP = "[" * 100000 + "]" * 100000


def with_metadata(path, **changed):
    """A frame model whose fcn_edge metadata is GOOD with ``changed`` values, written as raw JSON text (a value that is
    a str is written as is: hand-edited text)."""
    frame_segmenter(path)
    model = onnx.load(str(path))
    values = {**GOOD, **changed}
    props = {PREFIX + "format": FORMAT, **{PREFIX + k: v if isinstance(v, str) and k not in ("input_format", "source_sha256")
                                          else json.dumps(v) for k, v in values.items()}}  # fmt: skip
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return path


SYNTHETIC = ("--synthetic", "--size", "64x64", "--fps", "0", "--max-frames", "2", "--headless")


BAD_MODELS = {
    "palette-300": ({"palette": [[300, 0, 0], [0, 0, 0], [0, 0, 0]]}, "palette[0]"),
    "palette-two-values": ({"palette": [[0, 0], [0, 0, 0], [0, 0, 0]]}, "palette[0]"),
    "palette-short": ({"palette": [[0, 0, 0]]}, "one colour per class"),
    "palette-negative": ({"palette": [[0, 0, -1], [0, 0, 0], [0, 0, 0]]}, "palette[0]"),
    "palette-floats": ({"palette": [[0.5, 0, 0], [0, 0, 0], [0, 0, 0]]}, "whole numbers"),
    "classes-not-names": ({"classes": [1, 2, 3]}, "names"),
    "deep-palette": ({"palette": DEEP}, "nested too deeply"),
    "deep-config": ({"model_config": {"a": json.loads("[" * 40 + "]" * 40)}}, "nested deeper"),
    "stride-0": ({"output_stride": 0}, "output_stride"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_metadata_is_one_line_in_the_stream(tmp_path, capsys, case):
    changed, fragment = BAD_MODELS[case]
    model = with_metadata(tmp_path / "m.onnx", **changed)
    status, _, err = run_main(stream_main, ["--model", model, *SYNTHETIC], capsys)
    assert status == 2, err
    one_error_line(err, "m.onnx", fragment)
    with pytest.raises(FcnEdgeError, match="fcn_edge metadata"):
        read_metadata(model)


def test_good_metadata_still_reads(tmp_path):
    meta = read_metadata(with_metadata(tmp_path / "m.onnx"))
    assert meta.classes == CLASSES and meta.palette[1] == (128, 64, 128)


def test_export_refuses_to_write_metadata_it_would_not_read(tmp_path):
    meta = ModelMetadata(CLASSES, [(300, 0, 0), (0, 0, 0), (0, 0, 0)], Preprocess(), "frame", ["labels"], 32, "0" * 64, {})
    model = onnx.load(str(frame_segmenter(tmp_path / "m.onnx")))
    with pytest.raises(FcnEdgeError, match=r"palette\[0\]"):
        write_metadata(model, meta)


@pytest.mark.parametrize("sidecar", ['{"backend": "onnxruntime", "precision": 8}', DEEP, '{"model": {"palette": [[300]]}}'])
def test_a_hand_edited_sidecar_beside_an_onnx_model_does_not_stop_the_stream(tmp_path, capsys, sidecar):
    model = frame_segmenter(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text(sidecar)
    status, _, err = run_main(stream_main, ["--model", model, *SYNTHETIC], capsys)
    assert status == 0, err
    assert "default colours" in err


@pytest.fixture(scope="module")
def bad_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = ModelConfig(num_classes=3)
    path = tmp_path_factory.mktemp("ckpt") / "bad.pt"
    return save_checkpoint(path, build_model(config), config, CLASSES, [(300, 0, 0), (0, 0, 0), (0, 0, 0)], Preprocess())


@pytest.mark.parametrize(
    "script, flags", [("export_onnx.py", ("--checkpoint",)), ("build_engine.py", ("--fp32", "--checkpoint"))]
)
def test_a_checkpoint_palette_of_300_is_refused_at_export_and_build(bad_checkpoint, tmp_path, script, flags):
    outputs = ("--output", tmp_path / "m.onnx") if script == "export_onnx.py" else ("--engines-dir", tmp_path / "engines")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *flags, str(bad_checkpoint), *map(str, outputs)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert result.returncode == 2, result.stderr
    one_error_line(result.stderr, "bad.pt", "palette[0]")
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "engines").exists()
