"""Quantization-aware fine-tuning: fake quantization where the deployed Q/DQ graph quantizes, scales the build reads back."""

from __future__ import annotations

import copy
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fcn_edge.checkpoint import load_checkpoint, save_checkpoint
from fcn_edge.data import build_dataset
from fcn_edge.data.synthetic import CLASSES, PALETTE, render_scene
from fcn_edge.data.transforms import eval_transforms, train_transforms
from fcn_edge.export.onnx import export_checkpoint
from fcn_edge.models import ModelConfig, build_model
from fcn_edge.models.preprocess import frames_to_tensor, images_to_tensor
from fcn_edge.quantize import placement as qdq_placement
from fcn_edge.quantize import qdq, statistics
from fcn_edge.train import qat_ranges
from fcn_edge.spec import Preprocess
from fcn_edge.train import qat
from fcn_edge.train.loop import TrainConfig, build_loader, seed_epoch, train_one_epoch
from fcn_edge.train.losses import DistillationLoss
from fcn_edge.train.distributed import DistContext

SIZE = (64, 64)
pytestmark = pytest.mark.slow  # one small fine-tune, export and Q/DQ model shared by the module


def mobilenet_fcn(seed: int = 0) -> torch.nn.Module:
    """Random weights with BatchNorm statistics far from identity, so the export's BN folding matters."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(num_classes=len(CLASSES), backbone="mobilenet_v3_small", classifier_width=32))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    for score in model.skip_scores.values():  # FCN zero-initialises them: give the skips something to add
        torch.nn.init.normal_(score.weight, std=0.05)
    return model.eval()


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory) -> dict:
    """A checkpoint, its one-epoch --qat fine-tune (qat.pt) and the latter exported and prepared as a build does."""
    folder = tmp_path_factory.mktemp("qat")
    model = mobilenet_fcn()
    source = save_checkpoint(folder / "best.pt", model, model.config, CLASSES, PALETTE, Preprocess(), {"best_miou": 0.0})
    train_set = build_dataset("synthetic", None, "train", train_transforms(SIZE, scale=(0.75, 1.25)), size=SIZE, length=8)
    val_set = build_dataset("synthetic", None, "val", eval_transforms(), size=SIZE, length=2)
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-4)
    qat.fine_tune(load_checkpoint(source), config, train_set, val_set, folder / "out", log=lambda _: None, loss="teacher")
    path = folder / "out" / "qat.pt"
    export_checkpoint(path, folder / "qat.onnx", verify_sizes=[(1, 64, 96)])
    qdq.prepare(folder / "qat.onnx", folder / "prepared.onnx")
    checkpoint = load_checkpoint(path)
    found, unmatched = qat_ranges.points_in(
        folder / "prepared.onnx", checkpoint.build(), checkpoint.preprocess, "onnxruntime", folder
    )
    return {
        "folder": folder,
        "source": source,
        "qat": path,
        "prepared": folder / "prepared.onnx",
        "found": found,
        "unmatched": unmatched,
    }


def test_fake_quantized_tensors_are_the_deployed_graphs(qat_run):
    """Every activation the ONNX Runtime Q/DQ model quantizes was fake-quantized in training, and nothing else;
    every conv whose weights the graph quantizes had its weights rounded."""
    checkpoint = load_checkpoint(qat_run["qat"])
    record = checkpoint.training["qat"]
    assert record["placement"] == "onnxruntime" and record["weight_bits"] == 7
    found, unmatched = qat_run["found"], qat_run["unmatched"]
    # the one quantized tensor torch never holds: the frame minus the mean, which the export folds the std around
    assert len(unmatched) == 1 and "Pad" in unmatched[0]
    assert set(found.values()) == set(record["points"])  # same tensors, both ways
    assert len(found) >= 80
    model = onnx.load(str(qat_run["folder"] / "placement.onnxruntime.onnx"))
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    # a conv ORT runs in float anyway (no Q behind it) holds its rounded weights as a float initializer
    dequantized |= {t.name for t in model.graph.initializer if t.name.endswith(qdq_placement.FLOAT_WEIGHT_SUFFIX)}
    int8_convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in dequantized]
    float_convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] not in dequantized]
    assert len(record["weight_quantized_convs"]) == len(int8_convs) > 50
    assert float_convs  # the narrow upsampler convs and the label conv: float in the graph, not rounded in training


def test_qat_checkpoint_round_trips_weights_only(qat_run):
    payload = torch.load(qat_run["qat"], weights_only=True)
    plain = torch.load(qat_run["source"], weights_only=True)
    assert payload["state_dict"].keys() == plain["state_dict"].keys()  # fake quantization left no keys behind
    assert payload["training"]["qat"]["loss"] == "teacher"
    assert 0 < payload["training"]["qat"]["history"][0]["agreement"] <= 1
    points = payload["training"]["qat"]["points"]
    for entry in points.values():
        scale, zero_point, _, _ = qat.activation_qparams(entry["low"], entry["high"], "onnxruntime")
        assert entry["scale"] == scale > 0 and entry["zero_point"] == zero_point and entry["low"] <= entry["high"]
    checkpoint = load_checkpoint(qat_run["qat"])
    assert not any(
        torch.equal(checkpoint.state_dict[k], plain["state_dict"][k]) for k in checkpoint.state_dict if k.endswith("conv.weight")
    )


def test_ranges_are_the_builds_max_calibration(qat_run):
    """QAT's starting ranges are the ones the build's ``max`` calibration gives the same tensors on the same frames,
    read through the deployed graph (low end max(min, -amax), high end amax, as the quantizer gets them)."""
    frames = [render_scene(np.random.default_rng(70 + i), (64, 96))[0] for i in range(3)]
    build = statistics.collect_ranges(
        onnx.load(str(qat_run["prepared"])), [{"frame": f[None]} for f in frames], "max", progress=False
    )
    checkpoint = load_checkpoint(qat_run["qat"])
    found = qat_run["found"]
    ranges = qat.calibrate(checkpoint.build(), list(dict.fromkeys(found.values())), [
        images_to_tensor(checkpoint.preprocess, f) for f in frames])  # fmt: skip
    for tensor, point in found.items():
        amax = build.amax[tensor]
        scale, zero_point, _, _ = qat.activation_qparams(*ranges[point], "onnxruntime")
        built, built_zero, _, _ = qat.activation_qparams(max(build.low[tensor], -amax), amax, "onnxruntime")
        assert scale == pytest.approx(built, rel=1e-3) and abs(zero_point - built_zero) <= 1, tensor


def test_fine_tuning_keeps_the_calibrated_ranges(qat_run):
    """qat.pt's ranges are the calibration of the starting model on the first training batches, unchanged by the
    fine-tuning (the running min/max they replace only ever grew)."""
    source = load_checkpoint(qat_run["source"])
    record = load_checkpoint(qat_run["qat"]).training["qat"]["points"]
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-4)
    train_set = build_dataset("synthetic", None, "train", train_transforms(SIZE, scale=(0.75, 1.25)), size=SIZE, length=8)
    loader = build_loader(train_set, config, DistContext())
    seed_epoch(loader, config.seed, 0, 0)
    batches = [frames_to_tensor(source.preprocess, frames) for frames, _ in loader]
    assert len(batches) * config.batch_size <= qat.CALIBRATION_CROPS  # this tiny set: the calibration saw all of it
    ranges = qat.calibrate(source.build(), list(record), batches)
    for point, entry in record.items():
        assert (entry["low"], entry["high"]) == pytest.approx(ranges[point], rel=1e-6), point


def test_build_writes_the_learned_scales(qat_run):
    """The Q/DQ model a build writes carries the checkpoint's scales, not calibrated ones, and ONNX Runtime running
    it gives the labels the fake-quantized torch model gives."""
    folder, prepared = qat_run["folder"], qat_run["prepared"]
    checkpoint = load_checkpoint(qat_run["qat"])
    frames = [render_scene(np.random.default_rng(50 + i), (64, 96))[0] for i in range(2)]
    calibrated = statistics.collect_ranges(onnx.load(str(prepared)), [{"frame": f[None]} for f in frames], "max", progress=False)
    ranges, record = qat_ranges.learned_ranges(prepared, qat_run["qat"], calibrated, folder)
    assert record["scales"] == "learned by QAT" and record["learned_tensors"] >= 80
    qdq.quantize(prepared, folder / "int8.onnx", ranges, "onnxruntime")
    model = onnx.load(str(folder / "int8.onnx"))
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    found = qat_run["found"]
    points = checkpoint.training["qat"]["points"]
    compared = moved = 0
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in found:
            entry = points[found[node.input[0]]]
            scale, zero_point = float(constants[node.input[1]]), int(constants[node.input[2]])
            assert (scale, zero_point) == (entry["scale"], entry["zero_point"]), node.input[0]
            plain, _, _, _ = qat.activation_qparams(calibrated.low[node.input[0]], calibrated.high[node.input[0]], "onnxruntime")
            compared, moved = compared + 1, moved + (not math.isclose(plain, scale, rel_tol=1e-3))
    assert compared == len(found) and moved > compared // 2  # the learned scales, not the calibration's

    net = checkpoint.build()
    qat.attach(net, {point: (entry["low"], entry["high"]) for point, entry in points.items()}, "onnxruntime")
    session = ort.InferenceSession(str(folder / "int8.onnx"), providers=["CPUExecutionProvider"])
    agree = []
    for frame in frames:
        with torch.no_grad():
            torch_labels = net(images_to_tensor(checkpoint.preprocess, frame))[0].argmax(0).numpy()
        agree.append(np.mean(session.run(None, {"frame": frame[None]})[0][0] == torch_labels))
    assert np.mean(agree) >= 0.97, agree


def test_qat_step_runs_the_fake_quantization():
    """A training step through the fake quantization: outputs are rounded, ranges move, the loss falls; detach undoes it."""
    model = mobilenet_fcn().train()
    frames = torch.from_numpy(np.stack([render_scene(np.random.default_rng(i), SIZE)[0] for i in range(4)]))
    labels = torch.from_numpy(np.stack([render_scene(np.random.default_rng(i), SIZE)[1] for i in range(4)]).astype(np.int64))
    inputs = images_to_tensor(Preprocess(), frames.numpy())
    points = ["backbone.stem.1:out", "backbone.stem.2:out", "backbone.blocks.3:out", "classifier.4:out", "final_upsampler:in"]
    with torch.no_grad():
        reference = model.eval()(inputs)
    calibrated = qat.calibrate(model, points, [inputs[:2], inputs[2:]])
    attached = qat.attach(model, calibrated, "onnxruntime")
    with torch.no_grad():
        rounded = model(inputs)
    assert not torch.allclose(rounded, reference) and (rounded - reference).abs().max() < 0.5 * reference.abs().max()
    score = attached.points["classifier.4:out"]
    with torch.no_grad():  # a fake-quantized tensor takes at most 256 values
        assert len(torch.unique(model.classifier(model.backbone(inputs)["pool5"]))) <= 256
    model.train()
    statistics = model.backbone.stem[1].running_var.clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(4):
        loss = torch.nn.functional.cross_entropy(model(inputs * (1 + 3 * step)), labels)  # wider outliers each step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    # the ranges stay where the calibration put them: the running min/max they replace grew with every outlier
    # batch, and a wider range is a coarser INT8 grid (docs/qat.md, session 6)
    assert {point: (quant.low, quant.high) for point, quant in attached.points.items()} == calibrated
    with torch.no_grad():
        assert score.high < float(model.eval().classifier(model.backbone(inputs * 10)["pool5"]).max())
    assert torch.equal(model.backbone.stem[1].running_var, statistics)  # BatchNorm frozen, as the export folds it
    assert all(p.grad is not None for p in model.backbone.stem[0].parameters())  # straight-through gradients
    attached.detach()
    with torch.no_grad():
        after = model.eval()(inputs)
        plain = build_model(model.config).eval()
        plain.load_state_dict(model.state_dict())
        assert torch.equal(after, plain(inputs))  # no hook or rounded forward left behind


def test_distillation_moves_the_fake_quantized_model_toward_its_fp32_teacher():
    """--qat-loss teacher: steps through the fake quantization lower the disagreement with the frozen FP32 model,
    whose weights and statistics do not move."""
    student = mobilenet_fcn()
    with torch.no_grad():  # confident scores, as a trained model gives, then a student that starts away from them
        student.classifier[4].weight.mul_(30)
        teacher = copy.deepcopy(student).eval().requires_grad_(False)
        student.classifier[4].weight.add_(torch.randn_like(student.classifier[4].weight))
    before = copy.deepcopy(teacher.state_dict())
    points = ["backbone.stem.1:out", "backbone.blocks.3:out", "backbone.blocks.6:out", "classifier.4:out"]
    train_set = build_dataset("synthetic", None, "train", train_transforms(SIZE, scale=(1, 1)), size=SIZE, length=8)
    config = TrainConfig(epochs=1, batch_size=4, lr=3e-4)
    loader = build_loader(train_set, config, DistContext())
    inputs = images_to_tensor(Preprocess(), np.stack([train_set[i][0] for i in range(len(train_set))]))
    attached = qat.attach(student, qat.calibrate(student, points, [inputs]), "onnxruntime")
    criterion = DistillationLoss()

    def disagreement() -> float:
        with torch.no_grad():
            return criterion(student.eval()(inputs), teacher(inputs)).item()

    start = disagreement()
    assert start > 0  # the rounding alone moves the scores
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    for _ in range(4):  # 8 steps: the first ones, with dropout, can be worse
        train_one_epoch(student, criterion, optimizer, scheduler, scaler, loader, Preprocess(), torch.device("cpu"),
                        "distil", False, teacher)  # fmt: skip
    assert disagreement() < 0.6 * start
    after = teacher.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)  # frozen: weights and BatchNorm statistics
    assert not any(p.grad is not None for p in teacher.parameters())
    attached.detach()


def test_distillation_loss_is_zero_only_on_the_teachers_scores():
    scores = torch.randn(2, 3, 4, 5)
    loss = DistillationLoss()
    assert loss(scores, scores).item() == pytest.approx(0, abs=1e-6)
    assert loss(scores + 5, scores).item() == pytest.approx(0, abs=1e-5)  # softmax: a shift of every class is no change
    assert loss(torch.zeros_like(scores), scores).item() > 0.05
