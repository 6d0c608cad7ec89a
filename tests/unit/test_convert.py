"""Converting a deconv FCN to resize + conv: weight copy, least-squares fit, distillation, the script."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from fcn_edge.checkpoint import load_checkpoint, save_checkpoint
from fcn_edge.data.synthetic import CLASSES, PALETTE, SyntheticScenes
from fcn_edge.errors import FcnEdgeError
from fcn_edge.models import ModelConfig, build_model
from fcn_edge.models.resize_conv import build_student, convert, fit_resize_conv, resize_conv_config
from fcn_edge.models.upsample import DeconvUpsample, ResizeConvUpsample
from fcn_edge.models.preprocess import images_to_tensor
from fcn_edge.spec import Preprocess
from conftest import assert_user_error, run_script

# conv(nearest_x2(x)) in 1-D is a stride-2 kernel-4 transposed conv with taps
# K = [w2, w1 + w2, w0 + w1, w0] (w indexed as PyTorch's cross-correlation taps), borders included
NEAREST_TO_DECONV = torch.tensor([[0.0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]])


def deconv_fcn(num_classes: int = 4) -> nn.Module:
    """An untrained deconv FCN-8s (bilinear deconvs) whose skip scores are not zero, so every upsampler matters."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=num_classes, upsample="deconv"))
    with torch.no_grad():
        for score in model.skip_scores.values():
            nn.init.normal_(score.weight, std=0.05)
    return model.eval()


def scene_batches(count: int, size: int = 128, seed: int = 0, batch: int = 2) -> list[torch.Tensor]:
    scenes = SyntheticScenes(count, seed, (size, size))
    images = [scenes[i][0] for i in range(count)]
    return [images_to_tensor(Preprocess(), images[i : i + batch]) for i in range(0, count, batch)]


def test_fit_recovers_a_conv_that_the_deconv_represents_exactly():
    torch.manual_seed(0)
    channels = 3
    target_weight = torch.randn(channels, channels, 3, 3)
    deconv = DeconvUpsample(channels, 2)
    with torch.no_grad():  # ConvTranspose2d weights are (in, out, kh, kw)
        deconv.weight.copy_(torch.einsum("ay,oiyx,bx->ioab", NEAREST_TO_DECONV, target_weight, NEAREST_TO_DECONV))
    student = ResizeConvUpsample(channels, 2, "nearest")
    inputs = [torch.randn(2, channels, 9, 7), torch.randn(1, channels, 5, 6)]
    residual = fit_resize_conv(deconv, student, inputs)
    assert residual < 1e-5
    assert torch.allclose(student.conv.weight, target_weight, atol=1e-4)
    assert torch.allclose(student.conv.bias, torch.zeros(channels), atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(student(inputs[0]), deconv(inputs[0]), atol=1e-4)


def test_student_shares_every_weight_but_the_upsamplers():
    teacher = deconv_fcn()
    student = build_student(teacher, "bilinear")
    assert student.config.upsample == "resize_conv"
    teacher_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        if "upsampler" not in key:
            assert torch.equal(value, teacher_state[key]), key


def test_converted_fcn_has_no_transposed_conv_and_the_fit_reproduces_the_deconvs():
    teacher = deconv_fcn()
    batches = scene_batches(4)
    student, report = convert(teacher, "bilinear", batches, iter([]), batches, steps=0, progress=False)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in student.modules())
    assert set(report.residuals) == {"skip_upsamplers.0", "skip_upsamplers.1", "final_upsampler"}
    assert report.fitted == ["skip_upsamplers.0", "skip_upsamplers.1"]  # the final one is a fixed resize in both
    # bilinear deconvs are bilinear resizes away from the border; only the border is approximated
    assert max(report.residuals.values()) < 0.1
    assert report.agreement_before > 0.95
    with torch.no_grad():
        assert student(batches[0]).shape == teacher(batches[0]).shape


def test_a_few_distillation_steps_raise_the_label_agreement():
    teacher = deconv_fcn()
    with torch.no_grad():  # confident logits, and skip deconvs that a 3x3 conv after a resize cannot copy exactly
        teacher.classifier[-1].weight.mul_(20)
        for upsampler in teacher.skip_upsamplers:
            upsampler.weight.add_(0.05 * torch.randn_like(upsampler.weight))
    fixed = scene_batches(2, seed=100)[0]
    _, report = convert(teacher, "bilinear", scene_batches(4), itertools.repeat(fixed), [fixed], steps=20, lr=1e-4,
                        progress=False)  # fmt: skip
    assert report.agreement_before < 0.99
    assert report.agreement_after > report.agreement_before


def test_converting_a_resize_conv_model_is_a_user_error():
    with pytest.raises(FcnEdgeError, match="already uses resize_conv"):
        resize_conv_config(ModelConfig(num_classes=3), "bilinear", "best.pt")


@pytest.fixture(scope="module")
def deconv_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("convert") / "deconv.pt"
    model = deconv_fcn(len(CLASSES))
    save_checkpoint(path, model, model.config, CLASSES, PALETTE, Preprocess(), {"epoch": 3})
    return path


@pytest.mark.slow
def test_script_converts_and_records_the_conversion(deconv_checkpoint, tmp_path):
    out = tmp_path / "converted.pt"
    result = run_script(
        "convert_checkpoint.py", "--checkpoint", deconv_checkpoint, "--output", out, "--steps", "2",
        "--size", "64x64", "--calibration", "2", "--eval-length", "4", "--batch-size", "2", "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for fragment in ("final_upsampler", "label agreement", "mIoU on 4 held-out", "0 ConvTranspose2d"):
        assert fragment in result.stdout
    converted = load_checkpoint(out)
    assert converted.config.upsample == "resize_conv" and converted.classes == CLASSES
    record = converted.training["conversion"]
    assert record["source_sha256"] == load_checkpoint(deconv_checkpoint).sha256()
    assert record["steps"] == 2 and set(record["residuals"]) >= {"final_upsampler"}
    assert converted.training["source_training"] == {"epoch": 3}
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in converted.build().modules())


def test_script_refuses_a_resize_conv_checkpoint(tmp_path):
    config = ModelConfig(num_classes=len(CLASSES))
    path = save_checkpoint(tmp_path / "rc.pt", build_model(config), config, CLASSES, PALETTE, Preprocess())
    result = run_script("convert_checkpoint.py", "--checkpoint", path, "--output", tmp_path / "out.pt")
    assert_user_error(result, str(path), "already uses resize_conv")
    assert not (tmp_path / "out.pt").exists()


def test_script_names_an_unreadable_image(deconv_checkpoint, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), np.zeros((64, 64, 3), np.uint8))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    result = run_script("convert_checkpoint.py", "--checkpoint", deconv_checkpoint, "--output", tmp_path / "out.pt",
                        "--images", folder, "--steps", "1")  # fmt: skip
    assert_user_error(result, "broken.jpg")
