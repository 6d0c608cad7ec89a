"""The OpenVINO compile cache is bounded (issue 22): one blob per model, frame size and settings grew without end
(345 MB after one session of tests) outside the project. Entries are least-recently-used evicted down to
$FCN_EDGE_CACHE_MB, in $FCN_EDGE_CACHE/openvino; 0 turns the disk cache off."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from faults import one_error_line, run_main
from fcn_edge.backends import open_runner
from fcn_edge.stream.__main__ import main as stream_main

pytest.importorskip("openvino")


def heavy_frame_model(path):
    """Frames in, labels out, with a 112x112 3x3 convolution: a compiled blob of about 0.45 MB."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("w1", (112, 3, 1, 1)), ("w2", (112, 112, 3, 3)), ("w3", (3, 112, 1, 1)))]  # fmt: skip
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w1"], ["a"]),
        helper.make_node("Conv", ["a", "w2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "w3"], ["c"]),
        helper.make_node("ArgMax", ["c"], ["d"], axis=1, keepdims=0),
        helper.make_node("Cast", ["d"], ["labels"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(nodes, "heavy", [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["n", "h", "w", 3])],
                              [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["n", "h", "w"])], weights)  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def cache_state(folder):
    entries = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return {p.name: sum(f.stat().st_size for f in p.iterdir()) for p in entries}


def run_at(model, size):
    with open_runner(model, "openvino", threads=1) as runner:
        runner.infer(np.zeros((*size, 3), np.uint8))
        return runner.cache_dir


def test_the_cache_stays_within_its_bound_least_recently_used_first(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FCN_EDGE_CACHE_MB", "1")
    model = heavy_frame_model(tmp_path / "heavy.onnx")
    folder = run_at(model, (32, 32))
    assert folder == tmp_path / "cache" / "openvino"
    first = set(cache_state(folder))
    run_at(model, (40, 40))
    second = set(cache_state(folder)) - first
    blob = max(cache_state(folder).values())
    assert 0.4e6 < blob < 0.52e6 and len(cache_state(folder)) == 2  # two fit in 1 MB
    run_at(model, (32, 32))  # the first size again: now the most recently used
    run_at(model, (48, 48))  # a third does not fit: the least recently used (40x40) goes
    state = cache_state(folder)
    assert first <= set(state) and not second & set(state) and len(state) == 2
    assert sum(state.values()) <= 1 << 20
    for size in ((56, 56), (64, 64), (72, 72), (80, 80)):
        run_at(model, size)
        assert sum(cache_state(folder).values()) <= 1 << 20


def test_a_cache_of_0_mb_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FCN_EDGE_CACHE_MB", "0")
    assert run_at(heavy_frame_model(tmp_path / "heavy.onnx"), (32, 32)) is None
    assert not (tmp_path / "cache").exists()


def test_a_cache_size_that_is_not_a_number_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FCN_EDGE_CACHE_MB", "lots")
    model = heavy_frame_model(tmp_path / "heavy.onnx")
    status, _, err = run_main(
        stream_main, ["--model", model, "--backend", "openvino", "--synthetic", "--max-frames", "1", "--headless"], capsys
    )
    assert status == 2, err
    one_error_line(err, "FCN_EDGE_CACHE_MB", "lots")
