"""Rules every command shares (issue 22): no output is an input or another output of the run; an empty source,
device or name is a mistake; float flags are finite; every JSON written is strict (no NaN/Infinity).

Each case is one error line and exit 2 before any work, and nothing written.
"""

from __future__ import annotations

import json
import math
import tempfile

import cv2
import numpy as np
import pytest

from faults import (
    BUILD_FLAGS,
    TENSOR_FLAGS,
    calibration_folder,
    frame_segmenter,
    load_script,
    one_error_line,
    run_main,
    segmenter,
    snapshot,
)
from fcn_edge.atomic import check_distinct, json_text, write_json_atomic
from fcn_edge.errors import FcnEdgeError
from fcn_edge.sidecar import artifact_paths, write_sidecar
from fcn_edge.stream.__main__ import main as stream_main


def strict(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} in JSON")

    return json.loads(text, parse_constant=refuse)


# --- the helper -------------------------------------------------------------------------------------


def test_check_distinct_follows_symlinks_and_names_both_flags(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "a.mp4")
    with pytest.raises(FcnEdgeError, match="--output .* same file as --video"):
        check_distinct({"--video": tmp_path / "a.mp4"}, {"--output": tmp_path / "link.mp4"})
    with pytest.raises(FcnEdgeError, match="--stats-json .* same file as --output .*another output"):
        check_distinct({}, {"--output": tmp_path / "x", "--stats-json": tmp_path / "sub" / ".." / "x"})
    check_distinct({"--video": tmp_path / "a.mp4", "--images": None}, {"--output": tmp_path / "b.mp4", "--save-dir": None})


# --- the stream ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return frame_segmenter(tmp_path_factory.mktemp("model") / "frames.onnx")


def refused(capsys, args, *fragments):
    status, _, err = run_main(stream_main, args, capsys)
    assert status == 2, err
    return one_error_line(err, *fragments)


def test_stream_output_over_its_own_input_is_refused(model, tmp_path, capsys):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"not read: refused first")
    (tmp_path / "link.mp4").symlink_to(video)
    (tmp_path / "images").mkdir()
    before = snapshot(tmp_path)
    common = ["--model", model, "--headless"]
    refused(capsys, ["--video", video, "--output", tmp_path / "link.mp4", *common], "--output", "--video")
    refused(capsys, ["--synthetic", "--output", tmp_path / "o.mp4", "--stats-json", tmp_path / "o.mp4", *common],
            "--stats-json", "--output")  # fmt: skip
    refused(capsys, ["--images", tmp_path / "images", "--save-dir", tmp_path / "images" / ".", *common], "--save-dir", "--images")
    refused(capsys, ["--synthetic", "--output", model, "--model", model, "--headless"], "--output", "--model")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("flag", ["--url", "--gst", "--device"])
@pytest.mark.parametrize("value", ["", "  "])
def test_stream_empty_source_is_refused(model, capsys, flag, value):
    refused(capsys, [flag, value, "--model", model, "--headless", "--max-frames", "1"], flag, "empty")


@pytest.mark.parametrize("flag", ["--fps", "--alpha", "--reconnect-delay"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_stream_float_flags_are_finite(model, capsys, flag, value):
    refused(capsys, ["--synthetic", flag, value, "--model", model, "--headless", "--max-frames", "1"], flag, "finite")


# --- export, convert, train ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["export_onnx", "convert_checkpoint"])
def test_export_and_convert_refuse_writing_over_the_checkpoint(tmp_path, capsys, script):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not read: refused first")
    (tmp_path / "link.pt").symlink_to(checkpoint)
    before = snapshot(tmp_path)
    status, _, err = run_main(load_script(script).main, ["--checkpoint", checkpoint, "--output", tmp_path / "link.pt"], capsys)
    assert status == 2, err
    one_error_line(err, "--output", "--checkpoint")
    assert snapshot(tmp_path) == before


def test_train_refuses_out_in_the_data_root_and_nan_lr(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    before = snapshot(tmp_path)
    train = load_script("train").main
    status, _, err = run_main(train, ["--dataset", "folder", "--data-root", data, "--out", data], capsys)
    assert status == 2, err
    one_error_line(err, "--out", "--data-root")
    status, _, err = run_main(train, ["--lr", "nan", "--out", tmp_path / "run"], capsys)
    assert status == 2, err
    one_error_line(err, "--lr", "finite")
    assert snapshot(tmp_path) == before


# --- build_engine -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli():
    return load_script("build_engine")


@pytest.fixture
def build(cli, tmp_path_factory, tmp_path, capsys, monkeypatch):
    calib = calibration_folder(tmp_path_factory.mktemp("calib") / "calibration")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))

    def run(model, *flags, precision="--fp32"):
        args = [precision, "--onnx", model, *TENSOR_FLAGS, "--num-classes", "3", "--calib-dir", calib,
                "--engines-dir", tmp_path / "engines", *BUILD_FLAGS, *flags]  # fmt: skip
        return run_main(cli.main, args, capsys)

    return run


def test_build_refuses_an_artifact_over_its_own_onnx(build, tmp_path):
    (tmp_path / "engines").mkdir()
    model = segmenter(tmp_path / "engines" / "seg.fp32.onnx")
    before = snapshot(tmp_path)
    status, _, err = build(model, "--name", "seg")
    assert status == 2, err
    one_error_line(err, "--engines-dir", "--onnx")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["", "   ", " seg"])
def test_build_refuses_an_empty_or_spaced_name(build, tmp_path, name):
    model = segmenter(tmp_path / "seg.onnx")
    before = snapshot(tmp_path)
    status, _, err = build(model, "--name", name)
    assert status == 2, err
    one_error_line(err, "--name")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("flag, value", [("--max-miou-drop", "nan"), ("--search-minutes", "inf"),
                                         ("--min-agreement", "nan"), ("--threshold", "nan")])  # fmt: skip
def test_build_float_flags_are_finite(build, tmp_path, flag, value):
    model = segmenter(tmp_path / "seg.onnx")
    status, _, err = build(model, flag, value)
    assert status == 2, err
    one_error_line(err, flag, "finite")


# --- strict JSON --------------------------------------------------------------------------------------


def test_json_written_is_strict_with_unmeasurable_figures_as_null(tmp_path):
    figures = {"miou": float("nan"), "rows": [{"drop": float("inf")}, 1.5], "n": 3}
    assert strict(json_text(figures)) == {"miou": None, "rows": [{"drop": None}, 1.5], "n": 3}
    write_json_atomic(tmp_path / "stats.json", {"fps": math.nan})
    assert strict((tmp_path / "stats.json").read_text()) == {"fps": None}


def test_the_sidecar_is_strict_json(tmp_path):
    paths = artifact_paths(tmp_path, "seg", "fp32", "onnxruntime")
    staged = {paths.artifact: tmp_path / "staged.onnx", paths.sidecar: tmp_path / "staged.json"}
    staged[paths.artifact].write_bytes(b"model")
    write_sidecar(paths, {"verification": {"fp32_miou": float("nan"), "rows": [{"miou_drop": float("nan")}]}}, staged)
    sidecar = strict(staged[paths.sidecar].read_text())
    assert sidecar["verification"] == {"fp32_miou": None, "rows": [{"miou_drop": None}]}


def test_build_says_it_cannot_measure_miou_when_every_mask_pixel_is_ignore(build, tmp_path):
    """The budget is enforced, or the build says it cannot be: masks that are all 255 give no mIoU (was nan, passed)."""
    root = tmp_path / "val"
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    (root / "classes.txt").write_text("background\nroad\ncar\n")
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(root / "images" / f"{i}.png"), rng.integers(0, 256, (48, 64, 3), np.uint8))
        cv2.imwrite(str(root / "masks" / f"{i}.png"), np.full((48, 64), 255, np.uint8))
    status, out, err = build(segmenter(tmp_path / "seg.onnx"), "--val-data", f"folder:{root}", "--max-miou-drop", "0")
    assert status == 0, err
    assert "cannot measure mIoU" in out + err and "--max-miou-drop 0" in out + err
    sidecar = json.loads((tmp_path / "engines" / "seg.fp32.onnx.json").read_text(), parse_constant=lambda c: 1 / 0)
    assert sidecar["verification"]["fp32_miou"] is None


@pytest.mark.parametrize("flag", ["--images", "--video", "--save-dir", "--output", "--stats-json", "--model"])
def test_stream_empty_path_is_refused_not_read_as_the_working_folder(model, capsys, flag):
    source = [] if flag in ("--images", "--video") else ["--synthetic"]
    args = [*source, flag, "", "--max-frames", "1", "--headless"] + ([] if flag == "--model" else ["--model", model])
    refused(capsys, args, flag, "empty")


@pytest.mark.parametrize("flag", ["--engines-dir", "--calib-dir", "--onnx"])
def test_build_empty_path_is_refused(build, tmp_path, flag):
    model = segmenter(tmp_path / "seg.onnx")
    status, _, err = build(model, flag, "")
    assert status == 2, err
    one_error_line(err, flag, "empty")
