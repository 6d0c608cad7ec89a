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


def test_a_compile_waits_for_another_process_compiling_the_same_entry(tmp_path):
    """Processes share the cache and OpenVINO maps a blob without checking it: one loading a blob another was still
    writing died of SIGBUS. A compile holds its entry's lock; here the test holds it, as another process would."""
    import threading

    from fcn_edge.backends.openvino.core import cache_entry, compile_config, compile_for_shape, entry_lock, new_core

    model_path, cache = heavy_frame_model(tmp_path / "heavy.onnx"), tmp_path / "cache"
    core, config, shape = new_core(cache), compile_config(1, "fp32"), [1, 32, 32, 3]
    model = core.read_model(str(model_path))
    entry = cache_entry(cache, model_path, shape, config)
    compiled = []
    with entry_lock(entry):
        worker = threading.Thread(
            target=lambda: compiled.append(compile_for_shape(core, model, shape, config, cache, model_path))
        )
        worker.start()
        worker.join(timeout=3)  # long enough for an unguarded compile to write its blob
        assert worker.is_alive() and cache_state(cache)[entry.name] == 0  # waiting: nothing written yet
    worker.join(timeout=60)
    assert compiled and cache_state(cache)[entry.name] > 0.4e6  # then compiled and cached


def test_trimming_skips_an_entry_another_process_is_compiling_into(tmp_path):
    from fcn_edge.backends.openvino.core import entry_lock, trim_cache

    busy, idle = tmp_path / "busy", tmp_path / "idle"
    for entry in (busy, idle):
        entry.mkdir()
        (entry / "blob").write_bytes(b"x" * 1000)
    with entry_lock(busy):
        assert trim_cache(tmp_path, limit=0) == [idle]
    assert busy.is_dir() and not idle.exists()
