"""scripts/build_engine.py as a user runs it: a foreign ONNX model, our checkpoint, and the mistakes users make."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from conftest import ROOT, assert_user_error, run_script
from fcn_edge.backends.onnxruntime import default_threads
from fcn_edge.compile import timing
from fcn_edge.data.synthetic import render_scene
from fcn_edge.quantize import qdq
from fcn_edge.spec import Preprocess

SMALL = ["--calib-size", "64x96", "--verify-scenes", "3", "--verify-size", "64x96", "--latency-size", "64x96", "--no-progress"]


class EncoderDecoder(nn.Module):
    """Not an FCN and not exported by us: strided convs down, transposed conv up, float NCHW input ``x``."""

    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(1)
        self.down = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(32, 16, 4, 4), nn.ReLU(), nn.Conv2d(16, classes, 1))

    def forward(self, x):
        return self.up(self.down(x))


def export(model: nn.Module, path: Path, output: str = "scores", nhwc: bool = False) -> Path:
    """``model`` as a user's converter writes it: input ``x`` (float NCHW, or NHWC), batch/height/width dynamic, opset 17."""
    sample, dynamic = ((1, 64, 96, 3), {0: "n", 1: "h", 2: "w"}) if nhwc else ((1, 3, 64, 96), {0: "n", 2: "h", 3: "w"})
    torch.onnx.export(model, (torch.zeros(*sample),), str(path), input_names=["x"], output_names=[output],
                      dynamic_axes={"x": dynamic}, dynamo=False, opset_version=17)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> Path:
    return export(EncoderDecoder().eval(), tmp_path_factory.mktemp("foreign") / "segnet.onnx")


@pytest.fixture(scope="module")
def near_tie(tmp_path_factory) -> Path:
    """EncoderDecoder whose class scores differ by 1% of their size: INT8 noise flips labels, float does not."""
    model = EncoderDecoder().eval()
    with torch.no_grad():
        classifier = model.up[2]
        classifier.weight.copy_(classifier.weight[:1] + 0.01 * classifier.weight)
        classifier.bias.zero_()
    return export(model, tmp_path_factory.mktemp("near_tie") / "segnet.onnx")


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    for i in range(10):
        cv2.imwrite(str(folder / f"img{i:02d}.png"), render_scene(np.random.default_rng(7_000 + i), (64, 96))[0])
    return folder


class BinarySegmenter(EncoderDecoder):
    """A person/road/defect segmenter: one output channel, probabilities from a final Sigmoid."""

    def __init__(self):
        super().__init__(classes=1)

    def forward(self, x):
        return torch.sigmoid(super().forward(x))


class NhwcSegmenter(EncoderDecoder):
    """What converters from TF/TFLite keep: float32 NHWC input, permuted to NCHW inside."""

    def forward(self, x):
        return super().forward(x.permute(0, 3, 1, 2))


def scene_tensor(seed: int, nhwc: bool = False) -> np.ndarray:
    """A 64x96 synthetic scene as foreign_args' --mean/--std normalise it (the numpy twin of the graph's)."""
    frame = render_scene(np.random.default_rng(seed), (64, 96))[0]
    x = Preprocess((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).frames_to_array(frame[None])
    return x.transpose(0, 2, 3, 1).copy() if nhwc else x


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    """BinarySegmenter whose logits on a scene spread over +-2 around 0: both classes, few pixels on the fence."""
    model = BinarySegmenter().eval()
    scene, last = torch.from_numpy(scene_tensor(7_000)), model.up[2]
    with torch.no_grad():
        logits = torch.special.logit(model(scene))
        last.weight *= 2 / logits.std()
        last.bias.copy_(last.bias * 2 / logits.std() - (logits * 2 / logits.std()).median())
    return export(model, tmp_path_factory.mktemp("binary") / "person.onnx", output="prob")


@pytest.fixture(scope="module")
def nhwc(tmp_path_factory) -> Path:
    """NhwcSegmenter with each class's score centred on a scene: every class wins somewhere."""
    model = NhwcSegmenter().eval()
    with torch.no_grad():
        model.up[2].bias -= model(torch.from_numpy(scene_tensor(7_000, nhwc=True))).mean((0, 2, 3))
    return export(model, tmp_path_factory.mktemp("nhwc") / "tflite_seg.onnx", nhwc=True)


def source_labels(model: Path, seeds, nhwc: bool = False, threshold: float | None = None) -> list[np.ndarray]:
    """ONNX Runtime on the user's own model, then their threshold (one channel) or argmax: the labels a user expects."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    scores = [session.run(None, {"x": scene_tensor(seed, nhwc)})[0][0] for seed in seeds]
    return [(s[0] > threshold) if threshold is not None else s.argmax(0) for s in scores]


def streamed_labels(artifact: Path, seeds, folder: Path) -> list[np.ndarray]:
    """The labels the stream gives for the scenes of ``seeds``, read back from its overlays at full opacity."""
    (folder / "in").mkdir()
    for i, seed in enumerate(seeds):
        cv2.imwrite(str(folder / "in" / f"{i}.png"), render_scene(np.random.default_rng(seed), (64, 96))[0])
    result = subprocess.run(
        [sys.executable, "-m", "fcn_edge.stream", "--images", folder / "in", "--model", artifact, "--headless", "--alpha", "1",
         "--save-dir", folder / "out", "--stats-json", folder / "stats.json"], capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((folder / "stats.json").read_text())["frames"] == len(seeds)
    palette = json.loads(artifact.with_name(artifact.name + ".json").read_text())["model"]["palette"]
    colours = np.array(palette, np.uint8)[:, ::-1]  # BGR, as the overlay writes them
    found = []
    for path in sorted((folder / "out").glob("*.png")):
        image = cv2.imread(str(path))
        matches = (image[:, :, None, :] == colours[None, None]).all(-1)
        assert matches.any(-1).all(), "a pixel in no class colour"
        found.append(matches.argmax(-1))
    return found


def agreement(found: list[np.ndarray], expected: list[np.ndarray]) -> float:
    return float(np.mean([np.mean(f == e) for f, e in zip(found, expected)]))


HOLDOUT_SEEDS = [7_004, 7_009, 11]  # calibration hold-outs and a scene never seen


@pytest.mark.slow
def test_a_binary_sigmoid_model_builds_int8_and_streams_its_thresholded_labels(binary, calib, tmp_path):
    engines = tmp_path / "engines"
    args = ["--int8", "--onnx", binary, "--input-format", "tensor", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25",
            "0.25", "--num-classes", "1", "--threshold", "0.6", "--calib-dir", calib, "--engines-dir", engines,
            "--backend", "onnxruntime", *SMALL]  # fmt: skip
    result = run_script("build_engine.py", *args)
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((engines / "person.int8.onnx.json").read_text())
    assert sidecar["model"]["classes"] == ["background", "foreground"]
    assert sidecar["model"]["foreign"]["labels"]["threshold"] == {
        "activation": "sigmoid",
        "threshold": 0.6,
        "on_output": 0.6,
        "activation_from": "the graph's final Sigmoid",
    }
    assert sidecar["io"]["inputs"][0]["dtype"] == "uint8" and sidecar["io"]["outputs"][0]["name"] == "labels"
    assert sidecar["layers"]["Conv"]["int8"] >= 1 and sidecar["verification"]["rows"][0]["agreement"] >= 0.98

    expected = source_labels(binary, HOLDOUT_SEEDS, threshold=0.6)
    assert 0.2 < np.mean(expected) < 0.8  # both classes are there to get right
    assert agreement(streamed_labels(engines / "person.int8.onnx", HOLDOUT_SEEDS, tmp_path), expected) >= 0.98


@pytest.mark.slow
def test_a_float_nhwc_model_builds_int8_and_streams_its_labels(nhwc, calib, tmp_path):
    engines = tmp_path / "engines"
    args = ["--int8", *foreign_args(nhwc, calib, engines, "tensor-nhwc"), "--backend", "onnxruntime"]
    result = run_script("build_engine.py", *args)
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((engines / "tflite_seg.int8.onnx.json").read_text())
    assert sidecar["model"]["foreign"]["input_format"] == "tensor-nhwc"
    assert sidecar["model"]["foreign"]["input"] == "'x' float ['n', 'h', 'w', 3]"
    assert sidecar["layers"]["Conv"]["int8"] >= 1

    expected = source_labels(nhwc, HOLDOUT_SEEDS, nhwc=True)
    assert len(np.unique(np.concatenate([e.ravel() for e in expected]))) > 1
    assert agreement(streamed_labels(engines / "tflite_seg.int8.onnx", HOLDOUT_SEEDS, tmp_path), expected) >= 0.9


@pytest.mark.slow
def test_a_model_with_unnamed_nodes_is_really_int8(calib, tmp_path):
    """Unnamed nodes are legal ONNX; excluding one narrow conv by its name "" once excluded them all."""
    model = EncoderDecoder().eval()
    model.up = nn.Sequential(nn.ConvTranspose2d(32, 8, 4, 4), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    path = export(model, tmp_path / "unnamed.onnx")
    graph = onnx.load(str(path))
    for node in graph.graph.node:
        node.name = ""
    onnx.save(graph, str(path))
    engines = tmp_path / "engines"
    result = run_script("build_engine.py", "--int8", *foreign_args(path, calib, engines))
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((engines / "unnamed.int8.onnx.json").read_text())
    assert sidecar["layers"]["Conv"]["int8"] >= 1 and sidecar["layers"]["ConvTranspose"]["int8"] == 1
    trt = qdq.precision_summary(onnx.load(str(engines / "unnamed.int8.trt-qdq.onnx")))
    assert trt["Conv"]["int8"] >= 1


def foreign_args(model: Path, calib: Path, engines: Path, input_format: str = "tensor") -> list:
    return [
        "--onnx", model, "--input-format", input_format, "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25",
        "--num-classes", "3", "--calib-dir", calib, "--engines-dir", engines, "--min-agreement", "90", *SMALL,
    ]  # fmt: skip


@pytest.mark.slow
def test_foreign_onnx_builds_int8_then_skips(foreign, calib, tmp_path):
    engines = tmp_path / "engines"
    result = run_script("build_engine.py", "--int8", *foreign_args(foreign, calib, engines))
    assert result.returncode == 0, result.stderr
    assert "on the CPU" in result.stdout and "because TensorRT is not available" in result.stdout
    assert "agreement" in result.stdout and "INT8 TensorRT Q/DQ on CPU" in result.stdout
    names = sorted(p.name for p in engines.iterdir())
    assert names == sorted(
        ["segnet.int8.onnx", "segnet.int8.onnx.json", "segnet.int8.trt-qdq.onnx", "segnet.int8.calib", "segnet.int8.calib.onnx"]
    )
    sidecar = json.loads((engines / "segnet.int8.onnx.json").read_text())
    # the CPU runtime measured fastest (OpenVINO only where installed) runs it
    assert sidecar["backend"]["name"] in ("onnxruntime", "openvino") and sidecar["precision"] == "int8"
    # frames in, labels out, as the stream runs it; the model's own input is recorded
    assert sidecar["io"]["inputs"][0]["name"] == "frame" and sidecar["io"]["outputs"][0]["dtype"] == "uint8"
    assert (
        sidecar["model"]["foreign"]["input"] == "'x' float ['n', 3, 'h', 'w']"
        and sidecar["model"]["foreign"]["labels"] == "argmax"
    )
    assert sidecar["model"]["classes"] == ["class_0", "class_1", "class_2"]
    assert sidecar["sources"]["onnx_sha256"] and sidecar["sources"]["calibration_sha256"]
    rows = sidecar["verification"]["rows"]
    assert rows[0]["agreement"] >= 0.9 and rows[0]["max_logit_diff"] is not None and rows[0]["miou"] is None
    latency = sidecar["verification"]["latency"]  # wrapped into frames in, labels out: timed through the stream's runners
    assert latency["through"] == "runner" and latency["runs_on"] == sidecar["backend"]["name"]
    assert sidecar["layers"]["Conv"]["int8"] >= 1
    cache = (engines / "segnet.int8.calib").read_text().splitlines()
    assert cache[0] == "TRT-100300-EntropyCalibration2" and len(cache) > 3
    trt_model = onnx.load(str(engines / "segnet.int8.trt-qdq.onnx"))
    values = {t.name: onnx.numpy_helper.to_array(t) for t in trt_model.graph.initializer}
    assert all(not values[n.input[2]].any() for n in trt_model.graph.node if n.op_type in qdq.QDQ_OPS)

    again = run_script("build_engine.py", "--int8", *foreign_args(foreign, calib, engines))
    assert again.returncode == 0, again.stderr
    assert "up to date, skipped" in again.stdout and str(engines / "segnet.int8.onnx.json") in again.stdout
    assert "backend:" not in again.stdout  # skipped before any model was read


@pytest.mark.slow
def test_when_only_all_float_meets_the_budget_int8_says_so_or_with_allow_drop_writes_the_closest_int8(near_tie, calib, tmp_path):
    engines = tmp_path / "engines"
    args = ["--int8", *foreign_args(near_tie, calib, engines), "--min-agreement", "100"]  # only the float graph agrees on all
    refused = run_script("build_engine.py", *args)
    assert_user_error(refused, "no INT8 left", "met the budget")
    assert not engines.exists() or not list(engines.iterdir())

    written = run_script("build_engine.py", *args, "--allow-accuracy-drop")
    assert written.returncode == 0, written.stderr
    assert "--allow-accuracy-drop: writing the closest INT8 model the search tried" in written.stdout
    sidecar = json.loads((engines / "segnet.int8.onnx.json").read_text())
    search = sidecar["details"]["sensitivity"]
    closest = max(t["kept_float"] for t in search["trials"] if not t["met"])
    assert len(sidecar["details"]["kept_float"]) == closest < search["candidates"]
    convs_int8 = sum(sidecar["layers"].get(op, {}).get("int8", 0) for op in ("Conv", "ConvTranspose"))
    assert not sidecar["verification"]["passed"] and convs_int8 >= 1  # INT8, not the FP32 graph under its name


@pytest.mark.slow
def test_checkpoint_builds_fp16_with_metadata(tmp_path, calib):
    from fcn_edge.checkpoint import save_checkpoint
    from fcn_edge.data.synthetic import CLASSES, PALETTE
    from fcn_edge.models import ModelConfig, build_model
    from fcn_edge.spec import Preprocess

    config = ModelConfig(num_classes=len(CLASSES))
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", build_model(config).eval(), config, CLASSES, PALETTE, Preprocess())
    engines = tmp_path / "engines"
    result = run_script(
        "build_engine.py", "--fp16", "--checkpoint", checkpoint, "--calib-dir", calib, "--engines-dir", engines, *SMALL
    )
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((engines / "tiny.fp16.onnx.json").read_text())
    assert sidecar["model"]["checkpoint_sha256"] and sidecar["verification"]["rows"][0]["agreement"] >= 0.995
    # timed as the stream runs it: its runner, its thread count, FP32 in the same rounds; a median and its spread
    latency, row = sidecar["verification"]["latency"], sidecar["verification"]["rows"][0]
    assert (
        latency["through"] == "runner"
        and latency["threads"] == default_threads() == sidecar["backend"]["session_options"]["intra_op_num_threads"]
    )
    assert latency["rounds"] == timing.ROUNDS and latency["verdict"] in (timing.FASTER, timing.SLOWER, timing.WITHIN_NOISE)
    ratio = latency["ratio_to_fp32"]
    assert ratio["low"] <= ratio["median"] <= ratio["high"] and row["ratio_iqr"] == [ratio["low"], ratio["high"]]
    assert set(latency["ms"]) >= {"fp16 onnxruntime", "fp32 onnxruntime"} and "IQR" in result.stdout
    assert sidecar["io"]["inputs"][0] == {"name": "frame", "dtype": "uint8", "shape": ["N", "H", "W", 3]}
    props = {p.key for p in onnx.load(str(engines / "tiny.fp16.onnx")).metadata_props}
    assert "fcn_edge.classes" in props


def test_batch_sizes_are_verified_frame_by_frame_and_timed_per_frame(tmp_path, calib):
    """--batch-sizes: every frame of a batch keeps the labels it gets alone, through the runner the stream opens."""
    from fcn_edge.checkpoint import save_checkpoint
    from fcn_edge.data.synthetic import CLASSES, PALETTE
    from fcn_edge.models import ModelConfig, build_model

    config = ModelConfig(num_classes=len(CLASSES))
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", build_model(config).eval(), config, CLASSES, PALETTE, Preprocess())
    engines = tmp_path / "engines"
    common = ["--fp32", "--checkpoint", checkpoint, "--calib-dir", calib, "--engines-dir", engines, *SMALL]
    result = run_script("build_engine.py", *common, "--batch-sizes", "3")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((engines / "tiny.fp32.onnx.json").read_text())
    rows = sidecar["verification"]["batches"]
    assert [r["batch"] for r in rows] == [1, 3] and sidecar["options"]["batch_sizes"] == [1, 3]
    # 3 scenes and 2 calibration hold-out images of one size: a full batch of 3 and one filled up
    assert all(r["frames_compared"] == 5 and r["agreement_with_alone"] == 1.0 and r["ms_per_frame"] > 0 for r in rows)
    assert "| 3 | 100.0000% |" in result.stdout
    # the sizes are part of the build's key: without them the artifact is rebuilt, verified at batch 1 only
    again = run_script("build_engine.py", *common)
    assert again.returncode == 0 and "up to date" not in again.stdout
    assert json.loads((engines / "tiny.fp32.onnx.json").read_text())["verification"]["batches"] is None


def test_batch_sizes_beyond_a_fixed_batch_are_a_one_line_error_and_write_nothing(calib, tmp_path):
    """A foreign export fixed at 1x3x64x96 takes one frame a call: a batch of 2 cannot be verified."""
    static = tmp_path / "static.onnx"
    torch.onnx.export(EncoderDecoder().eval(), (torch.zeros(1, 3, 64, 96),), str(static), input_names=["x"],
                      output_names=["scores"], dynamo=False, opset_version=17)  # fmt: skip
    engines = tmp_path / "engines"
    result = run_script("build_engine.py", "--fp32", *foreign_args(static, calib, engines), "--batch-sizes", "2")
    assert_user_error(result, "--batch-sizes 2", "at most 1 frame")
    assert not any(engines.glob("*.onnx"))


def corrupt_calib(tmp_path: Path, calib: Path) -> Path:
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for p in calib.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "img03.png").write_bytes(b"\x89PNG but not really")
    return folder


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("empty calib", ["calibration folder", "has 0 images"]),
        ("missing calib", ["calibration folder", "does not exist"]),
        ("corrupt image", ["img03.png"]),
        ("not onnx", ["is not an ONNX model"]),
        ("max < min shape", ["--max-shape", "--min-shape"]),
        ("batch size 0", ["--batch-sizes 0 4", "1 to 64"]),
        ("engines parent is a file", ["--engines-dir", "not a folder"]),
    ],
)
def test_user_mistakes_are_one_line_errors_and_write_nothing(case, fragments, foreign, calib, tmp_path):
    engines = tmp_path / "engines"
    engines.mkdir()
    args = foreign_args(foreign, calib, engines)
    if case == "empty calib":
        (tmp_path / "empty").mkdir()
        args[args.index(calib)] = tmp_path / "empty"
    elif case == "missing calib":
        args[args.index(calib)] = tmp_path / "nowhere"
    elif case == "corrupt image":
        args[args.index(calib)] = corrupt_calib(tmp_path, calib)
    elif case == "not onnx":
        bogus = tmp_path / "model.onnx"
        bogus.write_text("this is not a model")
        args[args.index(foreign)] = bogus
    elif case == "batch size 0":
        args += ["--batch-sizes", "0", "4"]
    elif case == "max < min shape":
        args += ["--min-shape", "1x256x512x3", "--opt-shape", "1x256x512x3", "--max-shape", "1x128x512x3"]
    else:  # root ignores permissions, so make the folder impossible: its parent is a regular file
        blocker = tmp_path / "blocker"
        blocker.write_text("")
        args[args.index(engines)] = blocker / "engines"
    result = run_script("build_engine.py", "--int8", *args)
    assert_user_error(result, *fragments)
    assert list(engines.iterdir()) == []


def test_tensorrt_backend_without_gpu_fails_fast(foreign, calib, tmp_path):
    from fcn_edge.backends.tensorrt import probe

    if probe().available:
        pytest.skip("TensorRT and a GPU are present here")
    engines = tmp_path / "engines"
    result = run_script("build_engine.py", "--int8", "--backend", "tensorrt", *foreign_args(foreign, calib, engines))
    assert_user_error(result, "--backend tensorrt is not available", "GPU")
    assert not engines.exists() or list(engines.iterdir()) == []
