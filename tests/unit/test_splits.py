"""A user's folder with honest splits: train/ and val/ with one classes.txt, or a seeded fraction of a flat folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_edge.cli import HelpFormatter
from fcn_edge.data import build_dataset
from fcn_edge.data.folder import read_class_file
from fcn_edge.data.palette import default_palette
from fcn_edge.data.record import make_record, recorded_val_split
from fcn_edge.data.splits import in_val
from fcn_edge.errors import FcnEdgeError
from fcn_edge.train.runs import run_folder


def write_pairs(folder: Path, stems: list[str]) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    for k, stem in enumerate(stems):
        cv2.imwrite(str(folder / "images" / f"{stem}.jpg"), np.full((6, 9, 3), 20 * k % 256, np.uint8))
        cv2.imwrite(str(folder / "masks" / f"{stem}.png"), np.full((6, 9), k % 2, np.uint8))


def test_classes_txt_takes_optional_colours_and_names_with_spaces(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("background 0 0 0\n\nroad sign\nparked car 10 200 30\n")
    names, colours = read_class_file(path)
    assert names == ["background", "road sign", "parked car"]
    assert colours == [(0, 0, 0), default_palette(3)[1], (10, 200, 30)]
    path.write_text("background\ncar 10 300 30\n")
    with pytest.raises(FcnEdgeError, match=r"classes.txt line 2: colour 10 300 30 is out of range"):
        read_class_file(path)


def test_split_layout_reads_one_classes_txt_at_the_root_and_its_colours(tmp_path):
    write_pairs(tmp_path / "train", ["a", "b", "c"])
    write_pairs(tmp_path / "val", ["d"])
    (tmp_path / "classes.txt").write_text("background 1 2 3\npart 4 5 6\n")
    train, val = (build_dataset("folder", str(tmp_path), split) for split in ("train", "val"))
    assert len(train) == 3 and len(val) == 1 and val.samples[0][0].name == "d.jpg"
    assert train.classes == val.classes == ["background", "part"] and val.palette == [(1, 2, 3), (4, 5, 6)]
    with pytest.raises(FcnEdgeError, match="--val-fraction 0.2:.*already split into train/ and val/"):
        build_dataset("folder", str(tmp_path), "val", val_fraction=0.2)
    with pytest.raises(FcnEdgeError, match=r"no test/images/"):
        build_dataset("folder", str(tmp_path), "test")


def test_val_fraction_splits_a_flat_folder_by_name_the_same_way_every_time(tmp_path):
    stems = [f"IMG_{i:03d}" for i in range(40)]
    write_pairs(tmp_path, stems)
    (tmp_path / "classes.txt").write_text("background\npart\n")
    splits = {
        s: [p[0].stem for p in build_dataset("folder", str(tmp_path), s, val_fraction=0.25).samples] for s in ("train", "val")
    }
    assert sorted(splits["train"] + splits["val"]) == stems and not set(splits["train"]) & set(splits["val"])
    assert 4 <= len(splits["val"]) <= 16  # a hash, not an exact count
    assert splits["val"] == [s for s in stems if in_val(s, 0.25, 0)]
    write_pairs(tmp_path, ["IMG_new"])  # a new image never moves an old one across
    again = [p[0].stem for p in build_dataset("folder", str(tmp_path), "val", val_fraction=0.25).samples]
    assert [s for s in again if s != "IMG_new"] == splits["val"]
    other_seed = [p[0].stem for p in build_dataset("folder", str(tmp_path), "val", val_fraction=0.25, split_seed=1).samples]
    assert other_seed != splits["val"]
    with pytest.raises(FcnEdgeError, match=r"--val-fraction 1e-09 leaves no val images in .*: raise it"):
        build_dataset("folder", str(tmp_path), "val", val_fraction=1e-9)
    with pytest.raises(FcnEdgeError, match=r"--val-fraction 1.5 is out of range"):
        build_dataset("folder", str(tmp_path), "val", val_fraction=1.5)
    with pytest.raises(FcnEdgeError, match=r"--val-fraction splits a flat folder"):
        build_dataset("voc", str(tmp_path), "val", val_fraction=0.2)


def test_a_recorded_flat_folder_without_a_fraction_is_scored_as_its_training_images(tmp_path):
    write_pairs(tmp_path, ["a", "b"])
    record = make_record("folder", tmp_path, None, 0, False, ["bg", "x"], [(0, 0, 0), (9, 9, 9)])
    assert record["layout"] == "flat" and recorded_val_split(record) == ("train", True)
    split = make_record("folder", tmp_path, 0.2, 3, False, ["bg", "x"], [(0, 0, 0), (9, 9, 9)])
    assert (split["layout"], split["split_seed"], recorded_val_split(split)) == ("fraction", 3, ("val", False))
    on_purpose = make_record("folder", tmp_path, None, 0, True, ["bg", "x"], [(0, 0, 0), (9, 9, 9)])
    assert recorded_val_split(on_purpose) == ("train", True) and on_purpose["val_split"] == "train"


def test_run_folders_count_up_instead_of_overwriting(tmp_path):
    out = tmp_path / "runs" / "parts"
    assert run_folder(out, exist_ok=False) == out  # new
    out.mkdir(parents=True)
    assert run_folder(out, exist_ok=False) == out  # empty
    (out / "best.pt").write_bytes(b"x")
    assert run_folder(out, exist_ok=False) == tmp_path / "runs" / "parts2"
    (tmp_path / "runs" / "parts2").mkdir()
    (tmp_path / "runs" / "parts2" / "last.pt").write_bytes(b"x")
    assert run_folder(out, exist_ok=False) == tmp_path / "runs" / "parts3"
    assert run_folder(out, exist_ok=True) == out


def test_help_shows_every_default_with_or_without_help_text():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--size", default=(160, 240))
    parser.add_argument("--scales", default=(1.0, 1.5), help="scales")
    parser.add_argument("--out", default=Path("runs/x"), help="folder")
    parser.add_argument("--flag", action="store_true", help="a switch")
    parser.add_argument("--model", help="explained (default: the run's)")
    text = " ".join(parser.format_help().split())
    assert "--size SIZE (default: 160x240)" in text and "scales (default: 1.0,1.5)" in text and "folder (default: runs/x)" in text
    assert "a switch (default" not in text and "explained (default: the run's) --" in text + " --"
