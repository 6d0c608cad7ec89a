"""Quantization pieces on tiny real models: cache format, calibration folder, statistics, Q/DQ, FP16, sensitivity."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from fcn_edge.backends.onnxruntime import session
from fcn_edge.errors import FcnEdgeError
from fcn_edge.backends.tensorrt import calibration_cache as trt_cache
from fcn_edge.quantize import calibration, fp16, qdq, statistics
from fcn_edge.quantize.layer_error import layer_errors
from fcn_edge.quantize.node_flips import node_flips
from fcn_edge.quantize.sensitivity import fewest_in_float, quantize_back, rank, rank_by_flips

# Hand-made: scale 1/127 is 0x3C010204 (amax 1.0), scale 1.0 is 0x3F800000 (amax 127).
HAND_MADE_CACHE = "TRT-8601-EntropyCalibration2\ninput: 3c010204\n/conv1/Conv_output_0: 3f800000\n"


def test_cache_writer_matches_hand_made_example_byte_for_byte(tmp_path):
    path = trt_cache.write_cache(tmp_path / "model.calib", {"input": 1.0, "/conv1/Conv_output_0": 127.0}, "8.6.1")
    assert path.read_bytes() == HAND_MADE_CACHE.encode("ascii")
    version, scales = trt_cache.parse_cache(path.read_text())
    assert version == 8601
    assert scales == pytest.approx({"input": 1 / 127, "/conv1/Conv_output_0": 1.0}, rel=1e-7)


def test_cache_round_trips_scales_and_names_the_version():
    amax = {"a": 3.5, "b:0": 1e-3, "c/d": 250.0}
    version, scales = trt_cache.parse_cache(trt_cache.format_cache({k: v / 127 for k, v in amax.items()}, "10.3.0"))
    assert version == 100300
    assert list(scales) == list(amax)
    assert [s * 127 for s in scales.values()] == pytest.approx(list(amax.values()), rel=1e-6)
    with pytest.raises(FcnEdgeError, match="not a TensorRT calibration cache"):
        trt_cache.parse_cache("hello\n")


def test_the_up_to_date_check_does_not_import_torch():
    """The second `build_engine.py --int8` must answer in well under 5 s: torch costs seconds."""
    code = (
        "import sys, runpy; sys.argv = ['x', '--help']\ntry:\n runpy.run_path('scripts/build_engine.py', run_name='__main__')\n"
        "except SystemExit: pass\nprint('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.stdout.strip().splitlines()[-1] == "False", result.stdout + result.stderr


def test_calibration_folder_split_hash_and_errors(tmp_path):
    with pytest.raises(FcnEdgeError, match="does not exist"):
        calibration.find_calibration_set(tmp_path / "missing")
    with pytest.raises(FcnEdgeError, match="has 0 images"):
        calibration.find_calibration_set(tmp_path)
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"f{i:02d}.png"), np.full((40, 60, 3), i * 20, np.uint8))
    found = calibration.find_calibration_set(tmp_path)
    assert [p.name for p in found.holdout] == ["f04.png", "f09.png"]
    assert len(found.calibrate) == 8
    before = found.sha256()
    frames = calibration.load_frames(found.calibrate, (32, 48))
    assert frames[0].shape == (32, 48, 3) and frames[0].dtype == np.uint8
    (tmp_path / "f00.png").write_bytes(b"not a png")
    assert calibration.find_calibration_set(tmp_path).sha256() != before
    with pytest.raises(FcnEdgeError, match="f00.png"):
        calibration.load_frames(found.calibrate, (32, 48))


class Tiny(nn.Module):
    """conv-relu-conv-relu-conv on a float NCHW input ``x``; ``fragile`` gives conv b a huge outlier channel."""

    def __init__(self, fragile: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 4, 1)
        if fragile:
            with torch.no_grad():  # channel 0 of b's output is ~1e4 everywhere and c ignores it: INT8 crushes the rest
                self.b.weight[0] = 0
                self.b.bias[0] = 1e4
                self.c.weight[:, 0] = 0

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def export_tiny(path: Path, fragile: bool = False, opset: int = 17) -> Path:
    torch.onnx.export(
        Tiny(fragile).eval(), (torch.zeros(1, 3, 32, 32),), str(path), input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N", 2: "H", 3: "W"}}, dynamo=False, opset_version=opset,
    )  # fmt: skip
    return path


def feeds(count: int = 6, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(count)]


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tiny")
    qdq.prepare(export_tiny(tmp / "tiny.onnx"), tmp / "prepared.onnx")
    return tmp / "prepared.onnx"


def test_entropy_and_percentile_clip_an_outlier_that_max_keeps(prepared):
    data = feeds()
    data[0]["x"][0, 0, 0, 0] = 400.0  # one pixel far outside everything else
    model = onnx.load(str(prepared))
    ranges = {m: statistics.collect_ranges(model, data, m, progress=False) for m in statistics.METHODS}
    assert ranges["max"].amax["x"] == pytest.approx(400.0)
    assert ranges["entropy"].amax["x"] < 50 and ranges["percentile"].amax["x"] < 50


def test_the_build_calibrates_with_percentile_ranges_by_default():
    """percentile, not entropy: 97.11% against 94.67% plain INT8 agreement on MediaPipe's selfie model (docs/foreign.md)."""
    from fcn_edge.compile.__main__ import parse_args
    from fcn_edge.compile.options import BuildOptions

    assert BuildOptions.calib_method == parse_args([]).calib_method == "percentile"


@pytest.mark.parametrize("placement", qdq.PLACEMENTS)
def test_qdq_models_are_symmetric_per_channel_and_run(prepared, tmp_path, placement):
    ranges = statistics.collect_ranges(onnx.load(str(prepared)), feeds(), "entropy", progress=False)
    out = tmp_path / f"{placement}.onnx"
    qdq.quantize(prepared, out, ranges, placement)
    model = onnx.load(str(out))
    values = initializers(model)
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    weight_dq = [n for n in dq if n.input[0] in values and values[n.input[0]].ndim == 4]
    assert len(weight_dq) == 3
    for node in weight_dq:
        scale, zero = values[node.input[1]], values[node.input[2]]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        assert axis == 0 and scale.shape == (values[node.input[0]].shape[0],) and not zero.any()
        assert values[node.input[0]].dtype == np.int8
        # 7-bit on ONNX Runtime: a pair of u8 x s8 products must fit VPMADDUBSW's int16 on CPUs without VNNI
        assert np.abs(values[node.input[0]]).max() == {"onnxruntime": 64, "tensorrt": 127}[placement]
    zero_points = [values[n.input[2]] for n in model.graph.node if n.op_type in qdq.QDQ_OPS and len(n.input) > 2]
    if placement == "tensorrt":
        assert all(z.dtype == np.int8 and not z.any() for z in zero_points)
        assert not any(n.op_type == "QuantizeLinear" and n.input[0].endswith("logits") for n in model.graph.node)
    summary = qdq.precision_summary(model)
    assert summary["Conv"]["int8"] == 3
    labels = session(out).run(None, feeds(1, seed=5)[0])[0].argmax(1)
    reference = session(prepared).run(None, feeds(1, seed=5)[0])[0].argmax(1)
    assert (labels == reference).mean() > 0.9


def test_a_model_below_opset_13_is_converted_so_per_channel_int8_loads(tmp_path):
    """Per-channel DequantizeLinear needs opset 13's axis: an opset-11 export failed to load once quantized."""
    qdq.prepare(export_tiny(tmp_path / "tiny11.onnx", opset=11), tmp_path / "prepared.onnx")
    model = onnx.load(str(tmp_path / "prepared.onnx"))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == qdq.MIN_OPSET
    ranges = statistics.collect_ranges(model, feeds(), "entropy", progress=False)
    qdq.quantize(tmp_path / "prepared.onnx", tmp_path / "int8.onnx", ranges, "onnxruntime")
    labels = session(tmp_path / "int8.onnx").run(None, feeds(1, seed=5)[0])[0].argmax(1)
    assert (labels == session(tmp_path / "tiny11.onnx").run(None, feeds(1, seed=5)[0])[0].argmax(1)).mean() > 0.9


def test_fp16_keeps_io_types_and_the_ends_in_fp32(prepared, tmp_path):
    out = tmp_path / "fp16.onnx"
    fp16.to_fp16(prepared, out)
    model = onnx.load(str(out))
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [onnx.TensorProto.FLOAT]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    x = feeds(1)[0]
    got, want = session(out).run(None, x)[0], session(prepared).run(None, x)[0]
    assert np.abs(got - want).max() < 0.05


def test_one_pass_ranking_finds_the_node_that_reads_the_crushed_tensor_and_the_search_keeps_it(tmp_path):
    """b's outlier channel widens the range of relu(b), which c reads: c's own error is the largest, and
    keeping c (and only c) in float removes that Q/DQ, because no other quantized node reads the tensor."""
    prepared = tmp_path / "prepared.onnx"
    qdq.prepare(export_tiny(tmp_path / "fragile.onnx", fragile=True), prepared)
    model = onnx.load(str(prepared))
    data = feeds(4)
    ranges = statistics.collect_ranges(model, data, "max", progress=False)
    reference = [session(prepared).run(None, f)[0].argmax(1) for f in data]
    scratch, full = tmp_path / "trial.onnx", tmp_path / "int8.onnx"
    qdq.quantize(prepared, full, ranges, "onnxruntime")

    def agreement(excluded: list[str]) -> float:
        qdq.quantize(prepared, scratch, ranges, "onnxruntime", excluded)
        sess = session(scratch)
        return float(np.mean([(sess.run(None, f)[0].argmax(1) == r).mean() for f, r in zip(data, reference)]))

    assert agreement([]) < 0.8  # INT8 everywhere ruins it
    candidates = qdq.quantizable_nodes(model)
    errors = layer_errors(model, onnx.load(str(full)), candidates, data, progress=False)
    assert sorted(errors) == sorted(candidates)  # every node measured, the one writing the graph output too
    c = [n.name for n in model.graph.node if n.op_type == "Conv"][2]
    ranking = rank(errors, candidates)
    assert ranking[0] == c and errors[c] > 100 * errors[ranking[-1]]
    trials = []
    result = fewest_in_float(ranking, lambda kept: trials.append(len(kept)) or agreement(kept) >= 0.98, 60)
    assert result.kept_float == [c] and trials == [1] and not result.out_of_time

    flips = node_flips(prepared, ranges, candidates, data, tmp_path, seconds=600, progress=False)
    assert sorted(flips) == sorted(candidates) and all(0 <= f <= 1 for f in flips.values())
    assert flips[c] > 0.2 and rank_by_flips(flips, errors, candidates)[0] == c  # c alone changes the labels most
    assert node_flips(prepared, ranges, candidates, data, tmp_path, seconds=1e-6, progress=False) is None  # too slow: not used
    assert not list(tmp_path.glob("int8.one_node*"))


def test_search_finds_the_fewest_in_logarithmic_trials_and_stops_on_time():
    nodes = [f"n{i}" for i in range(77)]
    for need in (1, 2, 5, 38, 76, 77):
        trials = []
        result = fewest_in_float(nodes, lambda kept: trials.append(len(kept)) or len(kept) >= need, 60)
        assert result.kept_float == nodes[:need]
        assert len(trials) <= 2 * np.log2(need + 1) + 2 and 77 not in trials  # all in float is FP32: never tried
    ticks = iter(range(100))
    result = fewest_in_float(nodes, lambda kept: len(kept) >= 50, 10, clock=lambda: 3.0 * next(ticks))
    assert result.out_of_time and result.trials == [(1, False), (2, False), (4, False)] and result.kept_float == nodes
    result = fewest_in_float(nodes, lambda kept: len(kept) >= 3, 10, clock=lambda: 3.0 * next(ticks))
    assert result.out_of_time and result.kept_float == nodes[:4]  # the best found so far
    assert rank({"a": 1.0, "b": 3.0}, ["a", "c", "b"]) == ["b", "a", "c"]  # unmeasured last


def test_quantize_back_drops_the_nodes_a_prefix_did_not_need_last_ranked_first_within_its_time():
    needed = {"a", "c"}  # not a prefix of the ranking: agreement is not monotonic in the nodes kept float
    trials = []
    kept, tried = quantize_back(["a", "b", "c", "d"], lambda k: trials.append(list(k)) or needed <= set(k), 60)
    assert kept == ["a", "c"] and trials[0] == ["a", "b", "c"]  # d, the last ranked, tried first
    assert tried == [(3, True), (2, False), (2, True), (1, False)]
    ticks = iter(range(100))
    kept, tried = quantize_back(["a", "b", "c", "d"], lambda k: needed <= set(k), 10, clock=lambda: 6.0 * next(ticks))
    assert kept == ["a", "b", "c"] and tried == [(3, True)]  # out of time after one trial
    assert rank_by_flips({"a": 0.1, "b": 0.3, "c": 0.1}, {"a": 1.0, "c": 2.0}, ["a", "b", "c", "d"]) == ["b", "c", "a", "d"]


def test_with_every_quantizable_node_excluded_no_qdq_is_left(tmp_path):
    """The search's worst case is the FP32 model: Adds and convs alike are candidates (a residual block here)."""

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.a(x))
            return torch.sigmoid(self.b(y) + y) * y

    source, prepared = tmp_path / "res.onnx", tmp_path / "prepared.onnx"
    torch.onnx.export(
        Residual().eval(), (torch.zeros(1, 3, 32, 32),), str(source), input_names=["x"], dynamo=False, opset_version=17
    )
    qdq.prepare(source, prepared)
    model = onnx.load(str(prepared))
    ranges = statistics.collect_ranges(model, feeds(2), "max", progress=False)
    nodes = qdq.quantizable_nodes(model)
    assert {n.split("/")[-1] for n in nodes} >= {"Add"}
    qdq.quantize(prepared, tmp_path / "none.onnx", ranges, "onnxruntime", nodes)
    qdq.quantize(prepared, tmp_path / "none.trt.onnx", ranges, "tensorrt", nodes)
    for path in ("none.onnx", "none.trt.onnx"):
        assert not [n for n in onnx.load(str(tmp_path / path)).graph.node if n.op_type in qdq.QDQ_OPS]
