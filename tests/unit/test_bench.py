"""Benchmark bookkeeping: statistics, GFLOP counts, fingerprints and baseline comparison (no timing)."""

from __future__ import annotations

import json

import pytest
from torch import nn

from fcn_edge.bench import baselines
from fcn_edge.bench.fingerprint import fingerprint, machine_class
from fcn_edge.bench.flops import conv_gflops
from fcn_edge.bench.latency import stats_from_ms
from fcn_edge.errors import FcnEdgeError


def test_stats_from_samples():
    stats = stats_from_ms(list(range(1, 101)))
    assert stats.median_ms == 50.5 and stats.runs == 100
    assert stats.p90_ms == pytest.approx(90.1) and stats.p99_ms == pytest.approx(99.01)
    assert stats.throughput == pytest.approx(1000 / 50.5)


def test_conv_gflops_match_hand_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1, stride=2), nn.ConvTranspose2d(4, 4, 4, 2, 1))
    # 10x20 output: 200 px * 8 out * 3*3*3 ; 5x10 output: 50 px * 4 out * 8 in ;
    # deconv: each of 50 input px x 4 in-channels is spread over 4*4 taps x 4 out-channels
    macs = 200 * 8 * 27 + 50 * 4 * 8 + 50 * 4 * 16 * 4
    assert conv_gflops(model, 10, 20) == pytest.approx(2 * macs / 1e9)


def test_fingerprint_names_the_machine_class():
    found = fingerprint()
    assert found["machine_class"] == machine_class(found["arch"], found["cores"], found["isa"], found["gpu"])
    assert found["cores"] >= 1 and "onnxruntime" in found["libraries"] and "torch" in found["libraries"]
    assert machine_class("x86_64", 2, ["avx2", "avx512_vnni"], None) == "x86_64-2c-avx512_vnni-cpu"
    assert machine_class("aarch64", 6, ["asimd"], {"name": "Orin", "driver": "540"}) == "aarch64-6c-asimd-Orin"


def test_baseline_round_trip_and_verdicts(tmp_path):
    machine = {"machine_class": "x86_64-2c-avx512_vnni-cpu"}
    path = baselines.save_baseline(machine, {"ort-int8@512x256": 2.0}, "matmul", "first baseline", tmp_path, tolerance=0.3)
    baseline = baselines.load_baseline("x86_64-2c-avx512_vnni-cpu", tmp_path)
    assert baseline["history"][0]["reason"] == "first baseline" and path.name == "x86_64-2c-avx512_vnni-cpu.json"
    (ok,) = baselines.compare(baseline, {"ort-int8@512x256": 2.5})
    (slow,) = baselines.compare(baseline, {"ort-int8@512x256": 2.7})
    assert ok.ok and not slow.ok and slow.ratio == pytest.approx(1.35)
    with pytest.raises(FcnEdgeError, match="no figure for ort-fp32@512x256"):
        baselines.compare(baseline, {"ort-fp32@512x256": 1.0})
    baselines.save_baseline(machine, {"ort-int8@512x256": 2.1}, "matmul", "new ORT", tmp_path)
    assert [h["reason"] for h in json.loads(path.read_text())["history"]] == ["first baseline", "new ORT"]


def test_baseline_of_another_machine_class_is_refused(tmp_path):
    baselines.save_baseline({"machine_class": "aarch64-6c-asimd-Orin"}, {"k": 1.0}, "matmul", "jetson", tmp_path)
    with pytest.raises(baselines.BaselineMismatch, match="no latency baseline for machine class x86_64-2c-avx512_vnni-cpu"):
        baselines.load_baseline("x86_64-2c-avx512_vnni-cpu", tmp_path)
    # a file copied under the wrong name is refused too, not compared
    (tmp_path / "x86_64-2c-avx512_vnni-cpu.json").write_text((tmp_path / "aarch64-6c-asimd-Orin.json").read_text())
    with pytest.raises(baselines.BaselineMismatch, match="recorded on aarch64-6c-asimd-Orin"):
        baselines.load_baseline("x86_64-2c-avx512_vnni-cpu", tmp_path)


def test_baseline_refresh_needs_a_reason(tmp_path):
    with pytest.raises(FcnEdgeError, match="--reason"):
        baselines.save_baseline({"machine_class": "m"}, {"k": 1.0}, "matmul", "  ", tmp_path)
