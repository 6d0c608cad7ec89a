"""Bad input to scripts/train.py and scripts/evaluate.py: one error line, exit 2, nothing written."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_user_error, run_script
from fcn_edge.checkpoint import save_checkpoint
from fcn_edge.data.synthetic import CLASSES, PALETTE
from fcn_edge.models import ModelConfig, build_model
from fcn_edge.spec import Preprocess

TINY = ("--train-length", "8", "--val-length", "2", "--scene-size", "64x64", "--crop-size", "64x64",
        "--batch-size", "4", "--epochs", "1", "--threads", "1")  # fmt: skip


def files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def train_fails(tmp_path, *flags):
    """Run train.py with ``flags`` after the tiny defaults; return its result once nothing was written."""
    before = files(tmp_path)
    result = run_script("train.py", *TINY, "--out", tmp_path / "run", *flags)
    assert result.returncode == 2, result.stderr
    assert files(tmp_path) == before
    return result


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--epochs", "0"),
        ("--batch-size", "0"),
        ("--lr", "-0.1"),
        ("--weight-decay", "-1"),
        ("--max-minutes", "0"),
        ("--val-length", "0"),
    ],
)  # fmt: skip  (--threads 0: refused by argparse on every command, test_tracebacks.py)
def test_out_of_range_flag(tmp_path, flag, value):
    assert_user_error(train_fails(tmp_path, flag, value), f"{flag} {value}")


def test_out_under_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    result = train_fails(tmp_path, "--out", tmp_path / "notes.txt" / "run")
    assert_user_error(result, "--out", "notes.txt is a file")


def test_resume_from_a_missing_file(tmp_path):
    assert_user_error(train_fails(tmp_path, "--resume", tmp_path / "gone" / "last.pt"), "--resume", "last.pt")


def save_weights_only(path, training):
    config = ModelConfig(num_classes=len(CLASSES), classifier_width=16)
    save_checkpoint(path, build_model(config), config, CLASSES, PALETTE, Preprocess(), training=training)


def test_resume_from_best_pt(tmp_path):
    save_weights_only(tmp_path / "best.pt", {"epoch": 0, "best_miou": 0.5})
    result = train_fails(tmp_path, "--resume", tmp_path / "best.pt")
    assert_user_error(result, "best.pt", "no optimizer", "last.pt")


def test_evaluate_checkpoint_without_weights(tmp_path):
    save_weights_only(tmp_path / "model.pt", {})
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    del payload["state_dict"]
    torch.save(payload, tmp_path / "model.pt")
    assert_user_error(run_script("evaluate.py", "--checkpoint", tmp_path / "model.pt"), "model.pt", "'state_dict'")


def test_evaluate_on_no_images(tmp_path):
    save_weights_only(tmp_path / "model.pt", {})
    result = run_script("evaluate.py", "--checkpoint", tmp_path / "model.pt", "--length", "0")
    assert_user_error(result, "--length 0")
    assert "nan" not in result.stdout
