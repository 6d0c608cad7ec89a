"""Resuming from last.pt continues the run exactly as if it had never stopped."""

from __future__ import annotations

import pytest
import torch

from fcn_edge.checkpoint import load_checkpoint
from fcn_edge.data.synthetic import CLASSES, HELDOUT_SEED, PALETTE, SyntheticScenes
from fcn_edge.data.transforms import eval_transforms, train_transforms
from fcn_edge.errors import FcnEdgeError
from fcn_edge.models import ModelConfig
from fcn_edge.train.loop import TrainConfig, train


def run(out, resume=None, max_minutes=None, workers=0):
    """Three short epochs with random augmentation and dropout, so every RNG matters."""
    return train(
        ModelConfig(num_classes=len(CLASSES), classifier_width=16),
        TrainConfig(epochs=3, batch_size=4, lr=1e-3, workers=workers, max_minutes=max_minutes),
        SyntheticScenes(16, 0, (64, 64), train_transforms((48, 48), scale=(0.75, 1.25))),
        SyntheticScenes(2, HELDOUT_SEED, (64, 64), eval_transforms()),
        CLASSES,
        PALETTE,
        out,
        resume=resume,
        log=lambda _: None,
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path, workers):
    whole = run(tmp_path / "whole", workers=workers)
    stopped = run(tmp_path / "split", max_minutes=1e-9, workers=workers)  # stops after epoch 1, as a killed run would
    assert len(stopped["history"]) == 1
    torch.manual_seed(12345)  # a fresh process's RNG state must not matter either
    resumed = run(tmp_path / "split", resume=tmp_path / "split" / "last.pt", workers=workers)

    expected, actual = whole["model"].state_dict(), resumed["model"].state_dict()
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    a, b = (load_checkpoint(tmp_path / name / "last.pt").training for name in ("whole", "split"))
    assert a["scheduler"] == b["scheduler"]
    for key, state in a["optimizer"]["state"].items():
        assert all(torch.equal(state[k], b["optimizer"]["state"][key][k]) for k in state), key
    assert [(h["loss"], h["miou"]) for h in a["history"]] == [(h["loss"], h["miou"]) for h in b["history"]]


def test_best_pt_keeps_weights_only_and_cannot_be_resumed(tmp_path):
    run(tmp_path, max_minutes=1e-9)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best.training["epoch"] == 0 and "optimizer" not in best.training
    best.build()  # evaluate and export need nothing more
    with pytest.raises(FcnEdgeError, match=r"best\.pt: it has no optimizer or scheduler or scaler state.*last\.pt"):
        run(tmp_path / "again", resume=tmp_path / "best.pt")


def test_a_last_pt_from_before_scheduler_state_still_evaluates_but_does_not_resume(tmp_path):
    run(tmp_path, max_minutes=1e-9)
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    for key in ("scheduler", "scaler"):
        del payload["training"][key]
    torch.save(payload, tmp_path / "old.pt")
    load_checkpoint(tmp_path / "old.pt").build()
    with pytest.raises(FcnEdgeError, match=r"old\.pt: it has no scheduler or scaler state"):
        run(tmp_path / "again", resume=tmp_path / "old.pt")
