"""The peak micro-kernel, share of peak in the rows, and quiet-round timing."""

from __future__ import annotations

import itertools
import shutil
import time

import pytest

from fcn_edge.bench import peak
from fcn_edge.bench.latency import interleaved, stats_from_ms
from fcn_edge.bench.report import table
from fcn_edge.bench.suite import SizeResult


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler for the micro-kernel")
def test_micro_kernel_measures_every_precision_the_cpu_has():
    found = peak.measure(threads=1, seconds=0.02, repeats=1)
    assert set(found["gops"]) == {"fp32", "bf16", "int8"} and "micro-kernel" in found["method"]
    for precision, gops in found["gops"].items():
        assert (gops is None) == (not peak._cpu_has(precision))
    if found["gops"]["fp32"] and found["gops"]["int8"]:
        assert found["gops"]["int8"] > found["gops"]["fp32"]  # 4x the operations per instruction
    best = peak.best({"gops": {"fp32": 1.0, "bf16": None, "int8": 3.0}, "method": "m"}, {"gops": {"fp32": 2.0, "bf16": None, "int8": 1.0}})
    assert best["gops"] == {"fp32": 2.0, "bf16": None, "int8": 3.0}


def test_rows_give_the_share_of_their_precisions_peak():
    stats = {"ref:ort-matmul-fp32": stats_from_ms([1.0]), "openvino-int8": stats_from_ms([20.0]), "ort-fp32": stats_from_ms([50.0])}
    result = SizeResult((512, 1024), 12.0, stats, precisions={"openvino-int8": "int8", "ort-fp32": "fp32"},
                        agreement={"openvino-int8": 0.9995, "ort-fp32": 1.0}, peak={"int8": 1000.0, "fp32": 250.0})
    rows = {r["backend"]: r for r in result.rows()}
    assert rows["openvino-int8"]["peak_share"] == pytest.approx(0.6) and rows["ort-fp32"]["peak_share"] == pytest.approx(0.96)
    text = table(list(rows.values()))
    assert "60%" in text and "99.95%" in text


def test_quiet_rounds_drop_the_rounds_where_the_reference_was_slow():
    busy_rounds = itertools.cycle([False, False, True])  # every third round something else loads the machine
    state = {"busy": False}

    def reference() -> None:
        state["busy"] = next(busy_rounds)
        time.sleep(0.03 if state["busy"] else 0.005)

    def work() -> None:
        time.sleep(0.03 if state["busy"] else 0.001)

    stats = interleaved({"reference": reference, "work": work}, rounds=6, per_round=1, warmup=0, quiet_by="reference")
    assert stats["work"].runs == 3 and stats["work"].p99_ms < 10  # the quieter half of the rounds, none of the busy ones
