"""scripts/build_engine.py against bad input and faults: one error line, exit 2, and the engines folder as it was.

Most cases call the script's ``main`` in this process (each would otherwise pay a second of
interpreter start-up); the ones about signals run it as a user does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import pytest

from conftest import ROOT
from faults import (BUILD_FLAGS, TENSOR_FLAGS, calibration_folder, classifier, fill, frame_segmenter, load_script,
                    one_error_line, run_main, segmenter, small_disk, snapshot)  # fmt: skip
from fcn_edge.lock import build_lock
from fcn_edge.sidecar import ArtifactPaths, artifact_paths, schema_problem

INT8_FILES = ["seg.int8.calib", "seg.int8.calib.onnx", "seg.int8.onnx", "seg.int8.onnx.json", "seg.int8.trt-qdq.onnx"]


@pytest.fixture(scope="module")
def cli():
    return load_script("build_engine")


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    return calibration_folder(tmp_path_factory.mktemp("calib") / "calibration")


@pytest.fixture
def build(cli, calib, tmp_path, capsys, monkeypatch):
    """Run build_engine's main on a model into tmp_path/engines, its temporary folder in tmp_path/tmp."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))

    def run(model, *flags, engines=None, precision="--int8"):
        args = [precision, "--onnx", model, *TENSOR_FLAGS, "--calib-dir", calib, "--engines-dir", engines or tmp_path / "engines"]
        if "--num-classes" not in flags and "--classes" not in flags:
            args += ["--num-classes", "3"]
        return run_main(cli.main, [*args, *BUILD_FLAGS, *flags], capsys)

    return run


def built_names(folder):
    return sorted(p.name for p in folder.iterdir())


def assert_no_leftovers(tmp_path):
    """The build's temporary folder is gone and nothing hidden (temporary files, the lock) is left anywhere."""
    assert not list((tmp_path / "tmp").iterdir())
    assert not [p for p in tmp_path.rglob(".*")], list(tmp_path.rglob(".*"))


# --- 1. stale external data -------------------------------------------------------------------------


def test_changed_external_data_is_rebuilt_not_skipped(build, tmp_path):
    model = segmenter(tmp_path / "seg.onnx", external=True)
    assert build(model)[0] == 0
    first = json.loads((tmp_path / "engines" / "seg.int8.onnx.json").read_text())
    assert "up to date" in build(model)[1]

    (tmp_path / "seg.onnx.data").unlink()
    segmenter(tmp_path / "seg.onnx", external=True, seed=1)  # the same graph file, other weights in seg.onnx.data
    status, out, _ = build(model)
    assert status == 0 and "up to date" not in out
    second = json.loads((tmp_path / "engines" / "seg.int8.onnx.json").read_text())
    assert second["files"]["artifact"]["sha256"] != first["files"]["artifact"]["sha256"]


def test_missing_external_data_is_one_line(build, tmp_path):
    model = segmenter(tmp_path / "seg.onnx", external=True)
    (tmp_path / "seg.onnx.data").unlink()
    status, _, err = build(model)
    assert status == 2
    one_error_line(err, "seg.onnx.data", "missing")
    assert not (tmp_path / "engines").exists()


# --- 2. names are file names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "sub/x", ".hidden", "x" * 250])
def test_a_name_that_is_not_a_file_name_is_refused(build, tmp_path, name):
    model = segmenter(tmp_path / "seg.onnx")
    before = snapshot(tmp_path)
    status, _, err = build(model, "--name", name)
    assert status == 2
    one_error_line(err, "is not a plain file name")
    assert snapshot(tmp_path) == before and not (tmp_path / "engines").exists()


def test_a_checkpoint_name_with_a_path_writes_nothing_outside(cli, tmp_path, capsys, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "x.pt").write_bytes(b"checked before it is read")
    before = snapshot(tmp_path)
    status, _, err = run_main(cli.main, ["--int8", "--checkpoint", tmp_path / "x.pt", "--name", "../../x",
                                         "--engines-dir", tmp_path / "engines"], capsys)  # fmt: skip
    assert status == 2
    one_error_line(err, "'../../x'", "plain file name")
    assert snapshot(tmp_path) == before


# --- 4. disk full, read-only --------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["4k", "12k"], ids=["no-room", "room-for-some-files"])
def test_a_full_disk_leaves_no_file(build, tmp_path, size):
    model = segmenter(tmp_path / "seg.onnx")
    with small_disk(tmp_path / "disk", size) as disk:
        status, _, err = build(model, engines=disk)
        assert status == 2
        one_error_line(err, "No space left on device", "free some space")
        assert built_names(disk) == []  # no artifact without its sidecar and extras, no temporary file, no lock
    assert_no_leftovers(tmp_path)


def test_a_full_temporary_folder_is_one_line_naming_tmpdir(build, tmp_path, monkeypatch):
    model = segmenter(tmp_path / "seg.onnx")
    with small_disk(tmp_path / "disk", "8k") as disk:
        monkeypatch.setattr(tempfile, "tempdir", str(disk))
        status, _, err = build(model)
        assert status == 2
        one_error_line(err, "temporary folder", "MB free", "TMPDIR")
        assert not [p for p in disk.iterdir() if p.name.startswith("fcn_edge_")]
    assert not (tmp_path / "engines").exists()


def test_a_full_disk_keeps_the_previous_build_whole(build, tmp_path):
    model = segmenter(tmp_path / "seg.onnx")
    with small_disk(tmp_path / "disk", "256k") as disk:
        assert build(model, engines=disk)[0] == 0
        before = snapshot(disk)
        fill(disk, leave=12 * 1024)
        status, _, err = build(model, "--force", engines=disk)
        assert status == 2
        one_error_line(err, "No space left on device")
        (disk / "filler").unlink()
        assert snapshot(disk) == before  # all the old files, not a mix of old and new
        assert "up to date" in build(model, engines=disk)[1]


def test_a_read_only_engines_dir_is_refused_before_the_build(build, tmp_path):
    model = segmenter(tmp_path / "seg.onnx")
    with small_disk(tmp_path / "disk", "64k", read_only=True) as disk:
        status, out, err = build(model, engines=disk)
        assert "backend:" not in out  # refused before the model was read: nothing slow ran
    assert status == 2
    one_error_line(err, "--engines-dir", "Read-only file system")


# --- 5. damaged sidecars ---------------------------------------------------------------------------------


DAMAGE = {
    "list": lambda d, engines: [],
    "no-verification": lambda d, engines: {k: v for k, v in d.items() if k != "verification"},
    "no-file-path": lambda d, engines: {**d, "files": {**d["files"], "artifact": {"sha256": d["files"]["artifact"]["sha256"]}}},
    "no-files-artifact-deleted": lambda d, engines: ((engines / "seg.int8.onnx").unlink(), {**d, "files": {}})[1],
    "path-outside": lambda d, engines: {
        **d,
        "files": {**d["files"], "artifact": {**d["files"]["artifact"], "path": "../seg.onnx"}},
    },
    "backend-string": lambda d, engines: {**d, "backend": "onnxruntime"},  # was an AttributeError (issue 22)
    "images-string": lambda d, engines: {**d, "verification": {**d["verification"], "images": "voc:/data"}},
    "palette-300": lambda d, engines: {**d, "model": {**d["model"], "palette": [[300, 0, 0]] * len(d["model"]["classes"])}},
    "deep": lambda d, engines: {**d, "key": "[" * 100000},  # a string: the nesting itself is written below
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_sidecar_means_rebuild(build, tmp_path, damage):
    model = segmenter(tmp_path / "seg.onnx")
    engines = tmp_path / "engines"
    assert build(model)[0] == 0
    sidecar = engines / "seg.int8.onnx.json"
    damaged = json.dumps(DAMAGE[damage](json.loads(sidecar.read_text()), engines))
    sidecar.write_text(damaged.replace('"' + "[" * 100000 + '"', "[" * 100000 + "]" * 100000))  # "deep": RecursionError
    status, out, err = build(model)
    assert status == 0, err
    assert "is damaged" in out and "up to date" not in out
    assert built_names(engines) == INT8_FILES
    paths = artifact_paths(engines, "seg", "int8", "onnxruntime")
    assert schema_problem(json.loads(sidecar.read_text()), paths) is None
    assert_no_leftovers(tmp_path)


def test_the_schema_names_what_is_wrong(tmp_path):
    paths = ArtifactPaths(tmp_path / "m.fp32.onnx", {})
    assert schema_problem([], paths) == "not a JSON object"
    assert "files" in schema_problem({"key": "k", "files": {}}, paths)


# --- 6. foreign models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tensor", "frame"])
def test_a_static_input_shape_builds_or_is_one_line(build, tmp_path, kind):
    """Either the build runs at the model's one size, whole, or it says why not; never an ONNX Runtime traceback."""
    if kind == "tensor":
        model, flags, precision = segmenter(tmp_path / "seg.onnx", shape=(1, 3, 224, 224)), (), "--int8"
    else:  # its one conv scores labels, float on every placement: nothing for INT8 (refused, see below)
        model, flags, precision = (
            frame_segmenter(tmp_path / "seg.onnx", shape=(1, 224, 224, 3)),
            ("--input-format", "frame"),
            "--fp32",
        )
    status, _, err = build(model, *flags, precision=precision)
    assert "Traceback" not in err
    if status == 0:
        assert built_names(tmp_path / "engines") == (INT8_FILES if kind == "tensor" else ["seg.fp32.onnx", "seg.fp32.onnx.json"])
    else:
        assert status == 2
        one_error_line(err, "224x224")
        assert not (tmp_path / "engines").exists()
    assert_no_leftovers(tmp_path)


def test_a_classifier_is_one_line(build, tmp_path):
    status, _, err = build(classifier(tmp_path / "cls.onnx"))
    assert status == 2
    one_error_line(err, "'scores' float ['n', 10]", "not a segmentation model")
    assert not (tmp_path / "engines").exists()


def test_an_onnx_file_truncated_after_its_graph_is_one_line(build, tmp_path):
    whole = segmenter(tmp_path / "whole.onnx").read_bytes()
    graph = onnx.load_from_string(whole).graph.SerializeToString()
    truncated = tmp_path / "seg.onnx"
    truncated.write_bytes(whole[: whole.index(graph) + len(graph)])  # opset and metadata follow the graph
    status, _, err = build(truncated)
    assert status == 2
    one_error_line(err, "seg.onnx is incomplete")


@pytest.mark.parametrize("declared", [True, False], ids=["declared-in-graph", "seen-in-outputs"])
def test_a_wrong_number_of_classes_is_one_line(build, tmp_path, declared):
    model = segmenter(tmp_path / "seg.onnx", classes=3, declare_classes=declared)
    status, _, err = build(model, "--num-classes", "5")
    assert status == 2
    one_error_line(err, "scores 3 classes", "5")
    assert not (tmp_path / "engines").exists() or built_names(tmp_path / "engines") == []
    assert_no_leftovers(tmp_path)


def test_a_one_channel_output_without_a_sigmoid_asks_what_it_holds(build, tmp_path):
    status, _, err = build(segmenter(tmp_path / "seg.onnx", classes=1), "--num-classes", "1")
    assert status == 2
    one_error_line(err, "gives one channel", "not a Sigmoid", "--output-activation logits")
    assert not (tmp_path / "engines").exists()


def test_a_one_channel_output_given_several_classes_says_binary(build, tmp_path):
    status, _, err = build(segmenter(tmp_path / "seg.onnx", classes=1), "--num-classes", "3")
    assert status == 2
    one_error_line(err, "gives one channel (a binary model)", "--num-classes 1")


def test_threshold_flags_on_a_model_with_several_classes_are_one_line(build, tmp_path):
    status, _, err = build(segmenter(tmp_path / "seg.onnx"), "--threshold", "0.3")
    assert status == 2
    one_error_line(err, "scores 3 classes", "drop them")


def test_a_float_nhwc_input_called_a_tensor_names_tensor_nhwc(build, tmp_path):
    status, _, err = build(segmenter(tmp_path / "seg.onnx", shape=("n", "h", "w", 3)))
    assert status == 2
    one_error_line(err, "'x' float ['n', 'h', 'w', 3]", "--input-format tensor-nhwc")


def test_an_int8_build_with_nothing_in_int8_is_refused_not_written_as_fp32(build, tmp_path):
    """One conv that only scores labels stays float on every placement: the "INT8" file would be the FP32 model."""
    weight = onnx.numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["x", "w"], ["scores"])], "one_conv",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])], [weight],
    )  # fmt: skip
    model = tmp_path / "seg.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), model)
    status, _, err = build(model, "--allow-accuracy-drop")
    assert status == 2
    one_error_line(err, "no INT8 left", "FP32 model under an INT8 name", "--fp32")
    assert not (tmp_path / "engines").exists() or built_names(tmp_path / "engines") == []
    assert_no_leftovers(tmp_path)


# --- 7, 8. flags ---------------------------------------------------------------------------------------------


def test_no_verification_images_is_one_line(build, tmp_path):
    (tmp_path / "empty").mkdir()
    status, _, err = build(segmenter(tmp_path / "seg.onnx"), "--verify-scenes", "0", "--calib-dir", tmp_path / "empty",
                           precision="--fp32")  # fmt: skip
    assert status == 2
    one_error_line(err, "nothing to verify on", "--verify-scenes 1")


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--verify-scenes", "-5"], "--verify-scenes -5"),
        (["--min-agreement", "101"], "--min-agreement 101"),
        (["--max-miou-drop", "-1"], "--max-miou-drop -1"),
        (["--std", "0", "1", "1"], "--std 0 1 1"),
        (["--opt-level", "9"], "--opt-level 9"),
        (["--threshold", "1.5"], "--threshold 1.5"),
        (["--classes", "road,car,road"], "'road' more than once"),
        (["--classes", "road,,car"], "empty class name"),
        (["--verify-size", "100000x100000"], "too large"),
    ],
    ids=[
        "verify-scenes",
        "min-agreement",
        "max-miou-drop",
        "std",
        "opt-level",
        "threshold",
        "duplicate-class",
        "empty-class",
        "huge-size",
    ],
)
def test_out_of_range_flags_are_one_line(build, tmp_path, flags, fragment):
    status, _, err = build(segmenter(tmp_path / "seg.onnx"), *flags)
    assert status == 2
    one_error_line(err, fragment)
    assert not (tmp_path / "engines").exists()


@pytest.mark.parametrize("flag", ["--onnx", "--checkpoint"])
def test_a_folder_for_a_model_file_says_so(cli, tmp_path, capsys, flag):
    status, _, err = run_main(cli.main, ["--int8", flag, tmp_path, "--engines-dir", tmp_path / "engines"], capsys)
    assert status == 2
    one_error_line(err, "is a folder", flag)


def test_two_builds_of_one_name_are_locked_apart(build, tmp_path):
    model = segmenter(tmp_path / "seg.onnx")
    engines = tmp_path / "engines"
    engines.mkdir()
    with build_lock(engines, "seg"):
        status, _, err = build(model)
    assert status == 2
    one_error_line(err, "another build of 'seg'", "wait for it")
    assert built_names(engines) == []
    assert build(model)[0] == 0 and built_names(engines) == INT8_FILES  # the lock went with its holder


def test_sigterm_mid_build_cleans_up_and_exits_143(tmp_path, calib):
    model = frame_segmenter(tmp_path / "seg.onnx")
    (tmp_path / "tmp").mkdir()
    command = [sys.executable, str(ROOT / "scripts" / "build_engine.py"), "--int8", "--onnx", str(model),
               "--input-format", "frame", "--num-classes", "3", "--calib-dir", str(calib),
               "--engines-dir", str(tmp_path / "engines"), "--verify-scenes", "200", "--verify-size", "256x256",
               "--latency-size", "64x96", "--calib-size", "64x96", "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})  # fmt: skip
    for line in process.stdout:  # the build has started once it names its backend
        if line.startswith("backend:"):
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "terminated"
    assert not [p for p in (tmp_path / "tmp").iterdir() if p.name.startswith("fcn_edge_")]
    assert not (tmp_path / "engines").exists()
