"""A user's own data and models, as a new user tries them: real photographs in VOC layout, a foreign U-Net.

The dataset is made from the photos scikit-image and scikit-learn ship (tests/fixtures/voc_photos.py):
images of many sizes, objects cut from other photos, VOC palette masks with 255 borders.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import pytest

from conftest import assert_user_error, run_script
from fcn_edge import cpu_features
from fcn_edge.checkpoint import load_checkpoint
from fcn_edge.compile.verification_data import DataSpec, VerificationChoice, verified_data_changed
from fixtures.foreign_models import make_foreign_model
from fixtures.voc_photos import FOLDER_COLOURS, all_photos, make_folder_photos, make_voc_photos

QUICK = ["--latency-size", "64x96", "--no-progress"]


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_voc_photos(tmp_path_factory.mktemp("photos") / "VOC", train=16, val=6)


@pytest.mark.slow
def test_voc_photos_train_evaluate_and_build_int8_verified_on_the_val_split(voc, tmp_path):
    run = tmp_path / "run"
    trained = run_script("train.py", "--dataset", "voc", "--data-root", voc, "--epochs", "1", "--batch-size", "8",
                         "--crop-size", "96x96", "--threads", "2", "--out", run)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    checkpoint = run / "best.pt"
    record = load_checkpoint(checkpoint).training["data"]
    assert (record["dataset"], record["root"], record["val_split"], record["layout"]) == ("voc", str(voc.resolve()), "val", "voc")
    evaluated = run_script("evaluate.py", "--checkpoint", checkpoint, "--dataset", "voc", "--data-root", voc, "--split", "val",
                           "--no-plots")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    torch_miou = float(re.search(r"^mIoU\s+([\d.]+)", evaluated.stdout, re.M)[1])

    engines = tmp_path / "engines"
    built = run_script(
        "build_engine.py", "--int8", "--checkpoint", checkpoint, "--val-data", f"voc:{voc}", "--calib-data", f"voc:{voc}",
        "--engines-dir", engines, "--min-agreement", "50", "--max-miou-drop", "100", *QUICK,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert re.search(r"6 labelled images of voc:\S+ val at 6 sizes \d+x\d+\.\.\d+x\d+ \(--val-data\)", built.stdout), built.stdout
    sidecar = json.loads((engines / "run.int8.onnx.json").read_text())  # named after the run, not best.pt
    verification = sidecar["verification"]
    assert verification["images"]["kind"] == "dataset" and len(verification["images"]["images"]) == 6
    assert verification["fp32_miou"] == pytest.approx(torch_miou, abs=0.002)  # ONNX FP32 on full-size images = evaluate.py
    assert all(row["miou"] is not None for row in verification["rows"])
    assert sidecar["details"]["calibration"]["images"] == 13 and sidecar["details"]["calibration"]["holdout_images"] == 3


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    return make_folder_photos(tmp_path_factory.mktemp("photos") / "parts", train=10, val=4)


@pytest.mark.slow
def test_own_photos_in_the_split_layout_train_evaluate_and_build_with_no_dataset_flags(parts, tmp_path):
    """The journey of issue 25: every stage after training takes the data from the checkpoint's record,
    says so in one line, and nothing is overwritten by surprise."""
    earlier = tmp_path / "runs" / "parts"
    earlier.mkdir(parents=True)
    (earlier / "best.pt").write_bytes(b"an earlier run's")
    trained = run_script("train.py", "--dataset", "folder", "--data-root", parts, "--epochs", "1", "--batch-size", "4",
                         "--crop-size", "64x64", "--threads", "2", "--out", earlier)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    run = tmp_path / "runs" / "parts2"
    assert f"{earlier} holds an earlier run: writing {run}" in trained.stdout
    assert (earlier / "best.pt").read_bytes() == b"an earlier run's"
    summary = trained.stdout.index("train    10 images, crops 64x64")
    assert summary < trained.stdout.index("epoch   1/1") and "val      4 images of the val split" in trained.stdout
    assert "classes  6: background, cat, person" in trained.stdout and "device cpu" in trained.stdout
    assert cv2.imread(str(run / "results.png")) is not None
    sheet = cv2.imread(str(run / "predictions.png"))
    assert sheet is not None and sheet.shape[0] > 4 * 160  # a header and four rows of image | truth | prediction
    checkpoint = load_checkpoint(run / "best.pt")
    record = checkpoint.training["data"]
    assert (record["layout"], record["root"], record["val_split"], record["val_on_train"]) == (
        "split",
        str(parts.resolve()),
        "val",
        False,
    )
    assert checkpoint.palette == list(FOLDER_COLOURS.values()) and record["colors"] == [list(c) for c in FOLDER_COLOURS.values()]

    evaluated = run_script("evaluate.py", "--checkpoint", run / "best.pt", "--threads", "2", "--plots", tmp_path / "plots")
    assert evaluated.returncode == 0, evaluated.stderr
    assert (
        f"data: val split of folder:{parts.resolve()} (train/ and val/), 4 images (the dataset the checkpoint records"
        in evaluated.stdout
    )
    assert (tmp_path / "plots" / "parts2.predictions.png").is_file() and (tmp_path / "plots" / "parts2.results.png").is_file()

    engines = tmp_path / "engines"
    built = run_script("build_engine.py", "--int8", "--checkpoint", run / "best.pt", "--engines-dir", engines,
                       "--min-agreement", "50", "--max-miou-drop", "100", "--backend", "onnxruntime", *QUICK)  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert (
        f"calibration: train split of folder:{parts.resolve()} (train/ and val/) (the dataset the checkpoint records"
        in built.stdout
    )
    assert re.search(
        r"4 labelled images of folder:\S+ val at 4 sizes .*\(the dataset the checkpoint was trained on\)", built.stdout
    )
    artifact = engines / "parts2.int8.onnx"
    calibrated = json.loads((engines / "parts2.int8.onnx.json").read_text())["details"]["calibration"]
    assert calibrated["folder"] == str(parts.resolve()) and calibrated["images"] + calibrated["holdout_images"] == 10
    assert f"next:  fcn-edge stream --model {artifact} --camera 0" in built.stdout


def test_a_flat_folder_never_reports_its_training_images_as_val(parts, tmp_path):
    flat = tmp_path / "flat"
    shutil.copytree(parts / "train", flat)
    shutil.copy(parts / "classes.txt", flat)
    refused = run_script("train.py", "--dataset", "folder", "--data-root", flat, "--out", tmp_path / "run")
    assert_user_error(refused, f"--data-root {flat}", "--val-fraction", "--val-on-train")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def unet(tmp_path_factory) -> Path:
    """A U-Net nobody here wrote, ConvTranspose2d upsampling, exported with a fixed 1x3x64x96 input.

    Its classifier stays random (no probe fit): near-tied class scores make plain INT8 miss the
    budget, so the mixed-precision search has work to do."""
    path = tmp_path_factory.mktemp("unet") / "unet.onnx"
    return make_foreign_model("unet", path, all_photos(), static=True, size=(64, 96), bn_batches=2, bn_batch=2, probe_images=0)


@pytest.mark.slow
def test_static_shape_unet_builds_at_its_fixed_size_and_the_search_keeps_what_it_must_in_float(unet, voc, tmp_path):
    engines = tmp_path / "engines"
    args = ["--onnx", unet, "--input-format", "tensor", "--num-classes", "21", "--calib-data", f"voc:{voc}", "--engines-dir", engines,
            "--no-progress"]  # fmt: skip
    built = run_script("build_engine.py", "--int8", *args)
    assert "the model's input is fixed at 64x96: calibrating, verifying and timing at 64x96" in built.stdout
    assert "6 labelled images of voc:" in built.stdout
    assert "at 64x96, resized to the model's fixed input (the val split of --calib-data)" in built.stdout
    if built.returncode:  # random weights make labels fragile: then even one quantized node may cost 2% of them
        assert_user_error(built, "no INT8 left", "met the budget")
        assert not engines.exists() or not list(engines.iterdir())
    else:
        sidecar = json.loads((engines / "unet.int8.onnx.json").read_text())
        assert sidecar["verification"]["rows"][0]["agreement"] >= 0.98
        assert sidecar["details"]["kept_float"] and sidecar["details"]["sensitivity"]["trials"]
    assert re.search(r"ranked \d+ quantized nodes by their own error", built.stdout)

    fp16 = run_script("build_engine.py", "--fp16", *args)
    assert fp16.returncode == 0, fp16.stderr
    verification = json.loads((engines / "unet.fp16.onnx.json").read_text())["verification"]
    assert verification["rows"][0]["miou"] is not None
    assert verification["instruction_set"] == cpu_features.instruction_set()  # the stream compares it with its CPU's


def test_a_dataset_the_build_chose_to_verify_on_is_rechecked_when_it_changes(voc, tmp_path):
    """Without --val-data the build picks the dataset itself (the checkpoint's); its hash is kept in the sidecar so
    the up-to-date check can notice edited images or masks."""
    copy = shutil.copytree(voc, tmp_path / "VOC")
    plan = VerificationChoice("dataset", "the dataset the checkpoint was trained on", DataSpec("voc", copy), "val")
    sidecar = {"verification": {"images": plan.record([], images=50)}}
    assert sidecar["verification"]["images"]["sha256"] and not verified_data_changed(sidecar, 50)
    mask = sorted((copy / "SegmentationClass").glob("val_*.png"))[0]
    mask.write_bytes(mask.read_bytes() + b"\0")  # a relabelled mask
    assert verified_data_changed(sidecar, 50)
    shutil.rmtree(copy)  # gone: nothing to compare with, the artifact stands
    assert not verified_data_changed(sidecar, 50)
