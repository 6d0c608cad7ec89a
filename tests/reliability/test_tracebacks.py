"""The tracebacks of issue 22 that become one line, in real processes where the symptom was a crash: the doctor's
--json, Ctrl-C while a script imports, out of memory inside OpenCV, a frame the graph cannot take, external data
outside the model's folder, --threads 0 and --refine radii, a BOM in classes.txt, and scratch folders of killed
builds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT
from faults import (
    BUILD_FLAGS,
    TENSOR_FLAGS,
    calibration_folder,
    frame_segmenter,
    load_script,
    one_error_line,
    run_main,
    segmenter,
)
from fcn_edge.data.folder import read_classes
from fcn_edge.metadata import class_difference
from fcn_edge.scratch import reclaim_orphans
from fcn_edge.stream.__main__ import main as stream_main


def python(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout, **kwargs)


# --- the doctor -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["folder", "missing"])
def test_doctor_json_to_a_folder_or_a_missing_one_is_one_line_before_the_checks(tmp_path, where):
    target = tmp_path if where == "folder" else tmp_path / "nope" / "doctor.json"
    started = time.perf_counter()
    result = python("-m", "fcn_edge.doctor", "--json", target)
    assert result.returncode == 2, result.stderr
    one_error_line(result.stderr, "--json", str(target))
    assert "check " not in result.stdout  # refused before the table: none of the checks ran
    assert time.perf_counter() - started < 60


def test_doctor_is_a_cli_with_help():
    result = python("-m", "fcn_edge.doctor", "--help")
    assert result.returncode == 0 and "fcn-edge doctor" in result.stdout and "--json FILE" in result.stdout


# --- Ctrl-C while importing -------------------------------------------------------------------------------


FCN_EDGE = ("-c", "import sys; from fcn_edge.cli import main; sys.exit(main())")  # the installed fcn-edge command


@pytest.mark.parametrize("command", [("scripts/build_engine.py",), ("scripts/export_onnx.py",), (*FCN_EDGE, "build"),
                                     (*FCN_EDGE, "export")])  # fmt: skip
def test_ctrl_c_while_a_command_imports_is_one_line_and_130(command):
    # SIGINT as a terminal delivers it: a test run started in the background (nohup ... &) passes SIG_IGN on to children
    process = subprocess.Popen([sys.executable, *command, "--help"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    time.sleep(0.8)  # past the interpreter's own start; torch, onnx and numpy take seconds more: it lands inside an import
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err)
    assert "Traceback" not in err and err.strip() == "interrupted"


def test_sigterm_inside_an_import_mid_command_waits_for_the_import_then_exits_143(tmp_path):
    """A build loads modules as it goes (ONNX Runtime's quantization tools import torch); Terminated raised inside an
    extension module's initialisation aborted the interpreter. The SIGTERM is held until the import is done."""
    (tmp_path / "slow_module.py").write_text("import time\nprint('importing', flush=True)\ntime.sleep(1.5)\n")
    code = textwrap.dedent("""
        import sys, time
        from fcn_edge.errors import run_cli

        @run_cli
        def main(argv=None):
            import slow_module
            print("imported", flush=True)
            time.sleep(30)

        sys.exit(main())
    """)
    process = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})  # fmt: skip
    assert process.stdout.readline().strip() == "importing"
    process.send_signal(signal.SIGTERM)
    started = time.perf_counter()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, (out, err)
    assert out.strip() == "imported" and err.strip() == "terminated"  # the import finished, then the command ended
    assert time.perf_counter() - started < 10  # not the 30 s sleep: the held signal was raised


# --- out of memory, a frame too small -------------------------------------------------------------------------


def test_opencv_out_of_memory_ends_like_memory_error():
    """OpenCV's own out-of-memory error (cv2.error, not MemoryError), raised for real under an address-space limit."""
    code = textwrap.dedent("""
        import resource, sys
        import cv2, numpy as np
        from fcn_edge.errors import run_cli

        @run_cli
        def main(argv=None):
            resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
            cv2.resize(np.zeros((8, 8, 3), np.uint8), (40000, 40000))  # 4.8 GB

        sys.exit(main())
    """)
    result = python("-c", code)
    assert result.returncode == 2, result.stderr
    one_error_line(result.stderr, "out of memory")


def valid_conv_model(path):
    """Frames in, labels out, through a 3x3 convolution without padding and a 2x2 pooling: nothing under 4x4 runs."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(3, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w"], ["c"]),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2]),
        helper.make_node("Resize", ["p", "", "", "size"], ["r"], mode="nearest"),
        helper.make_node("ArgMax", ["r"], ["a"], axis=1, keepdims=0),
        helper.make_node("Cast", ["a"], ["labels"], to=TensorProto.UINT8),
        helper.make_node("Shape", ["t"], ["size"]),
    ]
    graph = helper.make_graph(nodes, "valid", [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["n", "h", "w", 3])],
                              [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["n", "h", "w"])], [weight])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_frame_the_graph_cannot_take_is_one_line(tmp_path, capsys, backend):
    model = valid_conv_model(tmp_path / "valid.onnx")
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.zeros((1, 1, 3), np.uint8))
    status, _, err = run_main(
        stream_main, ["--model", model, "--backend", backend, "--images", tmp_path / "imgs", "--headless"], capsys
    )
    assert status == 2, err
    one_error_line(err, "valid.onnx", "1x1")


# --- external data outside the model's folder ------------------------------------------------------------------


def test_external_data_outside_the_folder_is_refused_before_it_is_read(tmp_path):
    """The location names a FIFO outside the model's folder: hashing or loading it would block forever."""
    (tmp_path / "models").mkdir()
    path = segmenter(tmp_path / "models" / "seg.onnx", external=True)
    os.mkfifo(tmp_path / "outside.fifo")
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../outside.fifo"
    onnx.save(model, str(path))
    calib = calibration_folder(tmp_path / "calibration")
    result = python(ROOT / "scripts" / "build_engine.py", "--fp32", "--onnx", path, *TENSOR_FLAGS, "--num-classes", "3",
                    "--calib-dir", calib, "--engines-dir", tmp_path / "engines", *BUILD_FLAGS, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    one_error_line(result.stderr, "seg.onnx", "../outside.fifo", "outside its folder")


# --- flags ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "tensorrt", "auto"])
def test_threads_0_is_refused_on_every_backend(tmp_path, capsys, backend):
    model = frame_segmenter(tmp_path / "frames.onnx")
    status, _, err = run_main(
        stream_main, ["--synthetic", "--model", model, "--backend", backend, "--threads", "0", "--headless"], capsys
    )
    assert status == 2, err
    one_error_line(err, "--threads", "at least 1")


@pytest.mark.parametrize("script", ["benchmark", "evaluate", "convert_checkpoint", "checkerboard", "train"])
def test_threads_0_is_refused_by_every_script(capsys, script):
    status, _, err = run_main(load_script(script).main, ["--threads", "0"], capsys)
    assert status == 2, err
    one_error_line(err, "--threads", "at least 1")


@pytest.mark.parametrize("value", ["500,0.01", "2,nan", "2,inf", "2,0.01,64"])
def test_refine_is_bounded(capsys, value):
    status, _, err = run_main(load_script("export_onnx").main, ["--refine", value], capsys)
    assert status == 2, err
    one_error_line(err, "--refine", "radius 1..16")


# --- classes.txt ---------------------------------------------------------------------------------------------


def test_a_bom_in_classes_txt_is_not_part_of_the_first_name(tmp_path):
    (tmp_path / "classes.txt").write_bytes("\ufeffbackground\nroad\n".encode("utf-8"))
    assert read_classes(tmp_path / "classes.txt") == ["background", "road"]


def test_a_class_mismatch_shows_the_names_that_differ_as_repr():
    line = class_difference(["background", "road"], ["\ufeffbackground", "road"], "data/")
    assert "'background'" in line and "'\\ufeffbackground'" in line and "class 0" in line
    assert "3 classes" in class_difference(["a", "b", "c"], ["a"], "data/")


# --- scratch folders of killed runs ---------------------------------------------------------------------------


def test_scratch_folders_of_killed_runs_are_reclaimed_and_live_ones_kept(tmp_path):
    code = textwrap.dedent(f"""
        import sys, tempfile, time
        tempfile.tempdir = {str(tmp_path)!r}
        from fcn_edge.scratch import scratch_folder
        with scratch_folder("build") as folder:
            (folder / "model.onnx").write_bytes(b"x" * 100000)
            print(folder, flush=True)
            time.sleep(60)
    """)
    killed = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    live = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        killed_folder, live_folder = killed.stdout.readline().strip(), live.stdout.readline().strip()
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert os.path.isdir(killed_folder)  # kill -9: no cleanup ran
        (tmp_path / "fcn_edge_notes_1").mkdir()  # not a scratch folder's name: never touched
        removed = reclaim_orphans(tmp_path)
        assert [str(p) for p in removed] == [killed_folder]
        assert not os.path.exists(killed_folder) and os.path.isdir(live_folder) and (tmp_path / "fcn_edge_notes_1").is_dir()
    finally:
        live.kill()
        live.wait(timeout=30)
        killed.kill()


def test_a_build_reclaims_what_a_killed_build_left(tmp_path, capsys, monkeypatch):
    """The next build (here one that fails its checks early) reclaims the folder of a dead process."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    orphan = tmp_path / f"fcn_edge_build_{dead}_abc123"
    orphan.mkdir()
    (orphan / "model.onnx").write_bytes(b"x" * 1000)
    model = segmenter(tmp_path / "seg.onnx")
    calib = calibration_folder(tmp_path / "calibration")
    status, _, err = run_main(load_script("build_engine").main, ["--fp32", "--onnx", model, *TENSOR_FLAGS, "--num-classes", "3",
                              "--calib-dir", calib, "--engines-dir", tmp_path / "engines", *BUILD_FLAGS], capsys)  # fmt: skip
    assert status == 0, err
    assert not orphan.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("fcn_edge_")]  # its own scratch folders gone too
