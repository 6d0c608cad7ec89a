"""What the reliability tests share: tiny models nobody exported, a small disk, folder snapshots, in-process CLIs.

Every case asserts three things: the exit status, one line on stderr (no traceback), and the
state of the folders around it afterwards (nothing new, nothing stale, nothing outside).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT

BUILD_FLAGS = ("--calib-size", "64x96", "--verify-scenes", "2", "--verify-size", "64x96", "--latency-size", "64x96",
               "--no-progress", "--min-agreement", "50", "--max-miou-drop", "100")  # fmt: skip
TENSOR_FLAGS = ("--input-format", "tensor", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25")


def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file under ``folders`` (hidden ones included) with its bytes: equal snapshots mean nothing changed."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                found[str(path)] = path.read_bytes()
    return found


def one_error_line(stderr: str, *fragments: str) -> str:
    """The single 'error:' line of ``stderr`` (argparse's 'prog: error:' too), which names every fragment."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:") or ": error: " in line]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def load_script(name: str):
    """``scripts/<name>.py`` as a module, so its ``main`` runs in this process (no second interpreter start-up)."""
    spec = importlib.util.spec_from_file_location(f"cli_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(main, args, capsys) -> tuple[int, str, str]:
    """(status, stdout, stderr) of a ``run_cli`` main called in this process (argparse's exit included)."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


# --- models -------------------------------------------------------------------------------------------


def _save(model: onnx.ModelProto, path: Path, external: bool = False) -> Path:
    onnx.checker.check_model(model)
    if external:
        onnx.save(model, path, save_as_external_data=True, location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, path)
    return path


def segmenter(path: Path, classes: int = 3, shape=("n", 3, "h", "w"), declare_classes: bool = True,
              external: bool = False, seed: int = 0) -> Path:  # fmt: skip
    """Float NCHW in, [N,classes,H,W] logits out (the class count symbolic unless declared): two convs, random weights."""
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(classes, 8, 1, 1)).astype(np.float32), "w2"),
    ]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["scores"])]  # fmt: skip
    output_shape = ["n", classes if declare_classes else "k", "h", "w"]
    graph = helper.make_graph(
        nodes, "seg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, output_shape)], weights,
    )  # fmt: skip
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path, external)


def classifier(path: Path, classes: int = 10, frames: bool = False) -> Path:
    """Float NCHW in, [N,classes] scores out, as an ImageNet model; ``frames``: uint8 NHWC in, one uint8 class id per image."""
    weight = numpy_helper.from_array(np.ones((classes, 3), np.float32), "w")
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["scores"], transB=1)]  # fmt: skip
    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    output = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", classes])
    if frames:
        nodes = [helper.make_node("Cast", ["frame"], ["c"], to=TensorProto.FLOAT),
                 helper.make_node("Transpose", ["c"], ["x"], perm=[0, 3, 1, 2]), *nodes,
                 helper.make_node("ArgMax", ["scores"], ["a"], axis=1, keepdims=0),
                 helper.make_node("Cast", ["a"], ["labels"], to=TensorProto.UINT8)]  # fmt: skip
        image = helper.make_tensor_value_info("frame", TensorProto.UINT8, ["n", "h", "w", 3])
        output = helper.make_tensor_value_info("labels", TensorProto.UINT8, ["n"])
    graph = helper.make_graph(nodes, "cls", [image], [output], [weight])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def frame_segmenter(path: Path, shape=("n", "h", "w", 3), labels_shape=None, classes: int = 3) -> Path:
    """uint8 NHWC frames in, uint8 labels out, as the stream runs it."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(classes, 3, 1, 1)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["a"], axis=1, keepdims=0),
        helper.make_node("Cast", ["a"], ["labels"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes, "frames", [helper.make_tensor_value_info("frame", TensorProto.UINT8, list(shape))],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, labels_shape or list(shape[:3]))], [weight],
    )  # fmt: skip
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def calibration_folder(folder: Path, count: int = 10) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(count):
        cv2.imwrite(str(folder / f"img{i:02d}.png"), rng.integers(0, 256, (64, 96, 3), np.uint8))
    return folder


# --- a small disk -------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(folder: Path, size: str, read_only: bool = False):
    """A tmpfs of ``size`` at ``folder`` for the block (needs root, as CI has); skips the test where none can be mounted."""
    folder.mkdir(exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(mounted.stderr or 'mount failed').strip()}): the full-disk cases need root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the disk holding ``folder`` until about ``leave`` bytes are free."""
    disk = os.statvfs(folder)
    free = disk.f_bavail * disk.f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave))


def stream(*args, timeout=60) -> subprocess.CompletedProcess:
    """``python -m fcn_edge.stream ARGS`` as a user runs it, from the project folder."""
    return subprocess.run([sys.executable, "-m", "fcn_edge.stream", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)  # fmt: skip


def frames_in(path) -> int:
    """Frames a recording holds, read back through OpenCV."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count
