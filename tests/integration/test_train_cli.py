"""scripts/train.py and scripts/evaluate.py as a user runs them: real files, real training steps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from PIL import Image

from conftest import assert_user_error, run_script
from fcn_edge.data.palette import voc_colormap

pytestmark = pytest.mark.slow


def make_folder_dataset(root, masks):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nthing\nstuff\n")
    for i, mask in enumerate(masks):
        cv2.imwrite(str(root / "images" / f"img{i}.png"), np.full((*mask.shape, 3), 40 * i, np.uint8))
        cv2.imwrite(str(root / "masks" / f"img{i}.png"), mask)


def test_train_then_evaluate_a_folder_dataset(tmp_path):
    masks = [np.tile(np.array([0, 1, 2, 255], np.uint8), (48, 12)) for _ in range(4)]
    make_folder_dataset(tmp_path / "data", masks)
    out = tmp_path / "run"
    result = run_script(
        "train.py",
        "--dataset",
        "folder",
        "--data-root",
        tmp_path / "data",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--crop-size",
        "32x32",
        "--threads",
        "1",
        "--out",
        out,
        "--val-on-train",
    )
    assert result.returncode == 0, result.stderr
    assert "best train mIoU" in result.stdout and "val mIoU" not in result.stdout  # a flat folder: its training images
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    assert checkpoint["classes"] == ["background", "thing", "stuff"]
    assert checkpoint["training"]["epoch"] == 1
    resumed = run_script(
        "train.py",
        "--dataset",
        "folder",
        "--data-root",
        tmp_path / "data",
        "--epochs",
        "3",
        "--batch-size",
        "2",
        "--crop-size",
        "32x32",
        "--threads",
        "1",
        "--out",
        out,
        "--resume",
        out / "last.pt",
        "--val-on-train",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "at epoch 2" in resumed.stdout
    assert torch.load(out / "last.pt", weights_only=True)["training"]["epoch"] == 2
    evaluated = run_script(
        "evaluate.py", "--checkpoint", out / "best.pt", "--dataset", "folder", "--data-root", tmp_path / "data", "--threads", "1"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    for row in ("background", "thing", "stuff", "mIoU", "pixel acc"):
        assert row in evaluated.stdout


MIXED_SIZES = [(37, 53), (64, 48), (100, 80)]  # (H, W); 37x53 is smaller than the crop: padded with ignore


def mixed_size_masks(classes: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    masks = [rng.choice(classes, size).astype(np.uint8) for size in MIXED_SIZES]
    for mask in masks:
        mask[0] = 255
    return masks


def make_voc_dataset(root, masks):
    """VOC 2012 layout with real palette PNG masks, the same images in train and val."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for i, mask in enumerate(masks):
        cv2.imwrite(str(root / "JPEGImages" / f"img{i}.jpg"), np.full((*mask.shape, 3), 60 * i, np.uint8))
        png = Image.fromarray(mask)
        png.putpalette(voc_colormap(256).flatten().tolist())  # "L" becomes a palette ("P") image
        png.save(root / "SegmentationClass" / f"img{i}.png")
    for split in ("train", "val"):
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("".join(f"img{i}\n" for i in range(len(masks))))


@pytest.mark.parametrize("dataset", ["voc", "folder"])
def test_train_and_evaluate_images_of_mixed_sizes(tmp_path, dataset):
    if dataset == "voc":
        make_voc_dataset(tmp_path / "data", mixed_size_masks([0, 1, 15]))
    else:
        make_folder_dataset(tmp_path / "data", mixed_size_masks([0, 1, 2]))
    out = tmp_path / "run"
    flags = ("--dataset", dataset, "--data-root", tmp_path / "data")
    on_train = ("--val-on-train",) if dataset == "folder" else ()  # a flat folder has no val split
    result = run_script(
        "train.py",
        *flags,
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--crop-size",
        "48x48",
        "--threads",
        "1",
        "--out",
        out,
        *on_train,
    )
    assert result.returncode == 0, result.stderr
    assert ("train mIoU" if on_train else "val mIoU") in result.stdout
    evaluated = run_script(
        "evaluate.py",
        "--checkpoint",
        out / "best.pt",
        *flags,
        *(("--split", "val") if dataset == "voc" else ()),
        "--threads",
        "1",
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "(3 images)" in evaluated.stdout and "mIoU" in evaluated.stdout


def test_missing_dataset_folder(tmp_path):
    result = run_script("train.py", "--dataset", "folder", "--data-root", tmp_path / "nowhere")
    assert_user_error(result, "nowhere")


def train_one_epoch(tmp_path):
    """One epoch on the folder dataset at ``tmp_path/data``, 32x32 crops: the run where a bad file must surface."""
    return run_script("train.py", "--dataset", "folder", "--data-root", tmp_path / "data", "--epochs", "1",
                      "--batch-size", "1", "--crop-size", "32x32", "--out", tmp_path / "run", "--val-on-train")  # fmt: skip


def test_mask_with_values_outside_the_class_set(tmp_path):
    bad = np.zeros((32, 32), np.uint8)
    bad[0, :3] = (7, 9, 9)
    make_folder_dataset(tmp_path / "data", [np.zeros((32, 32), np.uint8), bad])
    result = train_one_epoch(tmp_path)
    assert_user_error(result, "img1.png", "7", "9")


def test_unreadable_image(tmp_path):
    make_folder_dataset(tmp_path / "data", [np.zeros((32, 32), np.uint8)] * 2)
    (tmp_path / "data" / "images" / "img1.png").write_bytes(b"\x89PNG garbage")
    result = train_one_epoch(tmp_path)
    assert_user_error(result, "img1.png")


def test_checkpoint_that_is_not_ours(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    assert_user_error(run_script("evaluate.py", "--checkpoint", path), "resnet.pth", "not an fcn_edge checkpoint")
    assert_user_error(run_script("evaluate.py", "--checkpoint", tmp_path / "absent.pt"), "absent.pt", "does not exist")
