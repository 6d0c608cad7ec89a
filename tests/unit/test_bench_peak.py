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
def test_micro_kernel_runs_every_precision_the_cpu_has():
    found = peak.kernels(threads=1, call_ms=2)
    assert set(found) == {p for p in peak.KERNELS if peak._cpu_has(p)}
    for kernel in found.values():
        started = time.perf_counter()
        kernel.run()
        assert kernel.ops / (time.perf_counter() - started) > 1e9  # over 1 GOP/s on any AVX-512 core
    if {"fp32", "int8"} <= set(found):
        assert found["int8"].ops > found["fp32"].ops  # 4x the operations per instruction, as many instructions per call
    assert "micro-kernel" in peak.describe(1, found)


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
