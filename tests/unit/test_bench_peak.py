"""The peak micro-kernel, share of peak in the rows, and quiet-round timing."""

from __future__ import annotations

import dataclasses
import itertools
import platform
import shutil
import time

import pytest

from fcn_edge.bench import peak
from fcn_edge.bench.latency import interleaved, stats_from_ms
from fcn_edge.bench.report import table
from fcn_edge.bench.suite import SizeResult


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler for the micro-kernel")
def test_micro_kernel_runs_every_precision_the_cpu_has():
    flags = peak.cpu_flags()
    found = peak.kernels(threads=1, call_ms=2)
    # the widest the CPU has: CI's compilers (GCC 12 here) know every -m flag, so none falls back
    assert {p: k.variant for p, k in found.items()} == {p: v[0] for p in peak.KERNELS if (v := peak.variants_for(p, flags))}
    if "avx2" in flags:  # every x86-64 CI machine: AVX2 EPYCs and AVX-512 Zen 4s alike
        assert {"fp32", "int8"} <= set(found)
    if "avx512_vnni" in flags:
        assert found["int8"].variant.isa == "avx512_vnni" and found["fp32"].variant.isa == "avx512"  # the widest wins
    for kernel in found.values():
        kernel.run()  # runs on this CPU (its speed is the benchmark's to measure, not a test's)
        assert kernel.ops > 0
    if {"fp32", "int8"} <= set(found):
        # per cycle, 2x (AVX2: one VPMADDUBSW+VPMADDWD step against two FMAs) to 4x (VNNI) the FP32 operations
        assert found["int8"].variant.ops > found["fp32"].variant.ops and found["int8"].ops > found["fp32"].ops
    text = peak.describe(1, found)
    assert "micro-kernel" in text and all(f"[{k.variant.isa}]" in text for k in found.values())


def test_each_instruction_set_compiles_alone_and_counts_its_operations(tmp_path):
    """A kernel per (precision, ISA) with its own -m flags: one the compiler lacks must not take the others along."""
    for variants in peak.KERNELS.values():
        assert [v.ops for v in variants] == sorted((v.ops for v in variants), reverse=True)  # widest first
    avx2_int8 = peak.KERNELS["int8"][-1]
    assert avx2_int8.isa == "avx2" and avx2_int8.ops == 64  # 32 u8 x s8 multiply-accumulates in 256 bits
    broken = dataclasses.replace(avx2_int8, compile=("-mno-such-isa",))
    if (shutil.which("cc") or shutil.which("gcc")) and platform.machine() == "x86_64":
        assert peak._function(tmp_path, "int8", broken) is None
        assert peak._function(tmp_path, "fp32", peak.KERNELS["fp32"][-1]) is not None  # compiles anywhere; runs where AVX2 is

    def isas(precision: str, flags: set[str]) -> list[str]:
        return [v.isa for v in peak.variants_for(precision, flags)]

    assert isas("int8", {"avx2", "fma"}) == ["avx2"] and isas("fp32", {"avx2", "fma"}) == ["avx2"] and not isas("bf16", {"avx2"})
    assert isas("int8", {"avx2", "avx_vnni", "avx512f", "avx512_vnni"}) == ["avx512_vnni", "avx_vnni", "avx2"]


def test_rows_give_the_share_of_their_precisions_peak():
    stats = {
        "ref:ort-matmul-fp32": stats_from_ms([1.0]),
        "openvino-int8": stats_from_ms([20.0]),
        "ort-fp32": stats_from_ms([50.0]),
    }
    result = SizeResult(
        (512, 1024),
        12.0,
        stats,
        precisions={"openvino-int8": "int8", "ort-fp32": "fp32"},
        agreement={"openvino-int8": 0.9995, "ort-fp32": 1.0},
        peak={"int8": 1000.0, "fp32": 250.0},
    )
    rows = {r["backend"]: r for r in result.rows()}
    assert rows["openvino-int8"]["peak_share"] == pytest.approx(0.6) and rows["ort-fp32"]["peak_share"] == pytest.approx(0.96)
    text = table(list(rows.values()))
    assert "60%" in text and "99.95%" in text


@pytest.mark.latency  # its figure is a wall-clock time: out of the default suite, which a loaded machine must pass
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
