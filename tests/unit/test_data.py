"""Datasets and joint transforms, on real files written into tmp_path."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fcn_edge.data import build_dataset
from fcn_edge.data.cityscapes import Cityscapes
from fcn_edge.data.folder import ImageMaskFolder
from fcn_edge.data.palette import default_palette, voc_colormap
from fcn_edge.data.synthetic import CLASSES, HELDOUT_SEED, PALETTE, SyntheticScenes, render_scene
from fcn_edge.data.transforms import (
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    Resize,
    eval_transforms,
    train_transforms,
)
from fcn_edge.data.voc import VOCSegmentation
from fcn_edge.errors import FcnEdgeError

K = len(CLASSES) - 1


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, np.ndarray, list[dict]]]:
    out = []
    for seed in range(50):
        info: list[dict] = []
        image, mask = render_scene(np.random.default_rng(seed), (128, 128), info)
        out.append((image, mask, info))
    return out


# --- synthetic --------------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_seeds_differ():
    a, b = SyntheticScenes(5, seed=0), SyntheticScenes(5, seed=0)
    for i in (0, 4):
        assert np.array_equal(a[i][0], b[i][0]) and np.array_equal(a[i][1], b[i][1])
    assert not np.array_equal(a[1][0], a[2][0])
    held = SyntheticScenes(1, seed=HELDOUT_SEED)
    assert not np.array_equal(a[0][0], held[0][0])
    # sample i of seed s is exactly the scene of rng(s + i): shard-independent
    image, mask = render_scene(np.random.default_rng(3), (128, 128))
    assert np.array_equal(a[3][0], image) and np.array_equal(a[3][1], mask)


def test_synthetic_types_shapes_and_attributes():
    ds = SyntheticScenes(2, size=(96, 160))
    image, mask = ds[1]
    assert image.dtype == np.uint8 and image.shape == (96, 160, 3)
    assert mask.dtype == np.uint8 and mask.shape == (96, 160)
    assert len(ds.classes) == len(ds.palette) >= 7 and ds.classes[0] == "background"
    assert len(set(PALETTE)) == len(PALETTE) and ds.ignore_index == 255
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(FcnEdgeError, match="too small"):
        SyntheticScenes(1, size=(20, 20))


def test_synthetic_masks_cover_every_class_and_only_known_ids(scenes):
    seen = np.zeros(K + 1, int)
    for image, mask, _ in scenes:
        assert mask.max() <= K
        seen += np.bincount(mask.ravel(), minlength=K + 1)
    assert (seen > 0).all(), f"classes never drawn: {np.flatnonzero(seen == 0)}"
    assert 0.5 < seen[0] / seen.sum() < 0.97  # objects are there, background dominates


def test_synthetic_has_small_objects(scenes):
    smallest = min(
        stats[1:, cv2.CC_STAT_AREA].min()
        for _, mask, _ in scenes
        for c in np.unique(mask)[1:]
        for stats in [cv2.connectedComponentsWithStats((mask == c).astype(np.uint8))[2]]
    )
    assert smallest <= 16 * 16
    sizes = [obj["size"] for _, _, info in scenes for obj in info]
    assert min(sizes) < 20 and max(sizes) > 50 and min(sizes) >= 16


def test_synthetic_occlusion_is_in_the_mask(scenes):
    objects = [obj for _, _, info in scenes for obj in info]
    occluded = [o for o in objects if o["visible"] < o["painted"]]
    assert len(occluded) >= 10
    # the mask agrees with the bookkeeping: per scene, visible pixels per class add up
    for _, mask, info in scenes:
        for c in range(1, K + 1):
            assert (mask == c).sum() == sum(o["visible"] for o in info if o["cls"] == c)


def test_synthetic_objects_differ_from_background(scenes):
    # texture/colour cue sanity: object pixels are more saturated than background pixels
    for image, mask, _ in scenes[:10]:
        sat = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1].astype(float)
        if (mask > 0).sum() > 200:
            assert sat[mask > 0].mean() > sat[mask == 0].mean()


def test_build_dataset_synthetic_splits_and_unknown_name():
    train = build_dataset("synthetic", None, "train", length=3)
    val = build_dataset("synthetic", None, "val", size=(64, 64))
    assert len(train) == 3 and len(val) == 200 and val[0][0].shape == (64, 64, 3)
    assert val.seed == HELDOUT_SEED and train.seed == 0
    with pytest.raises(FcnEdgeError, match="synthetic, voc, cityscapes, folder"):
        build_dataset("coco", "/x", "train")
    with pytest.raises(FcnEdgeError, match="data root"):
        build_dataset("voc", None, "train")


# --- VOC --------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_palette_png(path: Path, index: np.ndarray, palette: np.ndarray) -> None:
    """A real palette (colour type 3) PNG, the way VOC ships its masks."""
    h, w = index.shape
    raw = b"".join(b"\x00" + index[row].astype(np.uint8).tobytes() for row in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"PLTE", palette.astype(np.uint8).tobytes())
        + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    )  # fmt: skip


def _voc_tree(root: Path, masks: dict[str, np.ndarray], palette_png: bool) -> None:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    cmap = voc_colormap(256)
    for name, index in masks.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), np.full((*index.shape, 3), 90, np.uint8))
        if palette_png:
            write_palette_png(root / "SegmentationClass" / f"{name}.png", index, cmap)
        else:
            cv2.imwrite(str(root / "SegmentationClass" / f"{name}.png"), cmap[index][..., ::-1].copy())
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(masks) + "\n")


def test_voc_colormap_is_the_standard_one():
    cmap = voc_colormap(256)
    assert tuple(cmap[1]) == (128, 0, 0) and tuple(cmap[15]) == (192, 128, 128)
    assert tuple(cmap[255]) == (224, 224, 192) and len({tuple(c) for c in cmap}) == 256
    assert default_palette(3) == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]


@pytest.mark.parametrize("palette_png", [True, False], ids=["palette-png", "colour-png"])
def test_voc_recovers_indices_and_ignore(tmp_path, palette_png):
    index = np.zeros((12, 16), np.uint8)
    index[2:6, 3:9] = 15  # person
    index[7:10, 1:5] = 20  # tvmonitor
    index[6, :] = 255  # border = ignore
    index[0, 0] = 1
    _voc_tree(tmp_path, {"2007_000001": index}, palette_png)
    ds = VOCSegmentation(tmp_path, "train")
    image, mask = ds[0]
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    assert mask.dtype == np.uint8 and np.array_equal(mask, index)
    assert len(ds.classes) == len(ds.palette) == 21 and ds.palette[15] == (192, 128, 128)


def test_voc_rejects_foreign_colours_and_missing_layout(tmp_path):
    _voc_tree(tmp_path / "voc", {"a": np.zeros((4, 4), np.uint8)}, palette_png=False)
    bad = np.zeros((4, 4, 3), np.uint8)
    bad[1, 1] = (10, 200, 30)  # BGR, not a VOC colour
    cv2.imwrite(str(tmp_path / "voc/SegmentationClass/a.png"), bad)
    with pytest.raises(FcnEdgeError, match=r"a\.png.*RGB\(30, 200, 10\)"):
        VOCSegmentation(tmp_path / "voc", "train")[0]
    with pytest.raises(FcnEdgeError, match="val.txt"):
        VOCSegmentation(tmp_path / "voc", "val")
    with pytest.raises(FcnEdgeError, match=r"nowhere.*JPEGImages"):
        VOCSegmentation(tmp_path / "nowhere")


# --- Cityscapes -------------------------------------------------------------------------------


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    images = tmp_path / "leftImg8bit/val/bonn"
    labels = tmp_path / "gtFine/val/bonn"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    label_ids = np.array([[7, 26, 0], [33, 4, 24]], np.uint8)
    cv2.imwrite(str(images / "bonn_000000_000019_leftImg8bit.png"), np.zeros((2, 3, 3), np.uint8))
    cv2.imwrite(str(labels / "bonn_000000_000019_gtFine_labelIds.png"), label_ids)
    ds = Cityscapes(tmp_path, "val")
    assert len(ds) == 1 and len(ds.classes) == len(ds.palette) == 19
    _, mask = ds[0]
    assert mask.tolist() == [[0, 13, 255], [18, 255, 11]]
    assert ds.classes[13] == "car" and ds.palette[0] == (128, 64, 128)
    with pytest.raises(FcnEdgeError, match=r"gtFine"):
        Cityscapes(tmp_path, "train")


# --- folder -----------------------------------------------------------------------------------


def _folder(root: Path, names: list[str], num_classes: int = 3) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, name in enumerate(names):
        cv2.imwrite(str(root / "images" / name), np.full((8, 10, 3), 40 * k, np.uint8))
        mask = np.full((8, 10), k % num_classes, np.uint8)
        mask[0, 0] = 255
        cv2.imwrite(str(root / "masks" / (Path(name).stem + ".png")), mask)


def test_folder_pairs_images_with_masks(tmp_path):
    _folder(tmp_path, ["b.jpg", "a.png", "c.BMP"])
    (tmp_path / "classes.txt").write_text("background\ncat\n\ndog\n")
    ds = ImageMaskFolder(tmp_path)
    assert ds.classes == ["background", "cat", "dog"] and len(ds.palette) == 3
    assert [p[0].name for p in ds.samples] == ["a.png", "b.jpg", "c.BMP"]
    image, mask = ds[1]  # b.jpg, written second: label 0
    assert image.shape == (8, 10, 3) and mask.shape == (8, 10) and mask[0, 0] == 255 and mask[1, 1] == 0
    assert ds[2][1][1, 1] == 2
    assert len(build_dataset("folder", str(tmp_path), "train")) == 3


def test_folder_without_classes_txt_or_mask(tmp_path):
    _folder(tmp_path, ["x.png"])
    with pytest.raises(FcnEdgeError, match="classes.txt"):
        ImageMaskFolder(tmp_path)
    cv2.imwrite(str(tmp_path / "images/lonely.jpg"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FcnEdgeError, match=r"lonely\.jpg"):
        ImageMaskFolder(tmp_path, classes=["a", "b"])


def test_folder_mask_with_unknown_label(tmp_path):
    _folder(tmp_path, ["x.png"])
    mask = np.zeros((8, 10), np.uint8)
    mask[3, 3] = 9
    cv2.imwrite(str(tmp_path / "masks/x.png"), mask)
    ds = ImageMaskFolder(tmp_path, classes=["bg", "a", "b"])
    with pytest.raises(FcnEdgeError, match=r"masks[/\\]x\.png has label values 9 "):
        ds[0]


def test_folder_corrupt_image_and_missing_root(tmp_path):
    _folder(tmp_path, ["x.png"])
    (tmp_path / "images/x.png").write_bytes(b"this is not a png")
    ds = ImageMaskFolder(tmp_path, classes=["bg", "a", "b"])
    with pytest.raises(FcnEdgeError, match=r"images[/\\]x\.png"):
        ds[0]
    with pytest.raises(FcnEdgeError, match="missing_dir"):
        ImageMaskFolder(tmp_path / "missing_dir", classes=["a"])


# --- transforms -------------------------------------------------------------------------------


def _sample(h=20, w=30):
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = (np.arange(w)[None, :].repeat(h, 0) % 4).astype(np.uint8)
    return image, mask


def test_random_crop_pads_mask_with_ignore():
    image, mask = _sample(10, 12)
    out_i, out_m = RandomCrop(16, 20)(image, mask, rng=np.random.default_rng(0))
    assert out_i.shape == (16, 20, 3) and out_m.shape == (16, 20)
    assert (out_m == 255).sum() == 16 * 20 - 10 * 12
    assert (out_i[out_m == 255] == 0).all()
    small_i, small_m = RandomCrop(5, 7)(image, mask, rng=np.random.default_rng(1))
    assert small_i.shape == (5, 7, 3) and 255 not in small_m


def test_flip_is_consistent_between_image_and_mask():
    image, mask = _sample()
    out_i, out_m = RandomHorizontalFlip(1.0)(image, mask, rng=np.random.default_rng(0))
    assert np.array_equal(out_i, image[:, ::-1]) and np.array_equal(out_m, mask[:, ::-1])
    assert out_i.flags.c_contiguous and torch.from_numpy(out_m).shape == mask.shape
    same_i, same_m = RandomHorizontalFlip(0.0)(image, mask, rng=np.random.default_rng(0))
    assert same_i is image and same_m is mask


def test_scale_uses_nearest_for_masks():
    image, mask = _sample()
    mask[5:9, 5:9] = 255
    for seed in range(5):
        out_i, out_m = RandomScale(0.5, 2.0)(image, mask, rng=np.random.default_rng(seed))
        assert out_i.shape[:2] == out_m.shape
        assert set(np.unique(out_m)) <= set(np.unique(mask))
    out_i, out_m = Resize(33, 47)(image, mask)
    assert out_m.shape == (33, 47) and set(np.unique(out_m)) <= set(np.unique(mask))


def test_color_jitter_changes_image_only():
    image, mask = _sample()
    out_i, out_m = ColorJitter(0.4, 0.4, 0.4)(image, mask, rng=np.random.default_rng(0))
    assert out_m is mask and out_i.dtype == np.uint8 and not np.array_equal(out_i, image)


def test_pipelines_are_reproducible_from_torch_seed():
    image, mask = _sample(40, 50)
    t = train_transforms(32)

    def run(seed):
        torch.manual_seed(seed)
        return [t(image, mask) for _ in range(3)]

    a, b, c = run(0), run(0), run(1)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    assert a[0][0].shape == (32, 32, 3) and a[0][1].shape == (32, 32)
    state = torch.get_rng_state()
    eval_i, eval_m = eval_transforms()(image, mask)
    assert eval_i is image and torch.equal(state, torch.get_rng_state())  # eval leaves the RNG alone
    assert Compose([Resize(8, 8)])(image, mask)[1].shape == (8, 8)


def test_dataset_applies_transform_last():
    ds = SyntheticScenes(1, transform=Resize(64, 32))
    image, mask = ds[0]
    assert image.shape == (64, 32, 3) and mask.shape == (64, 32)
