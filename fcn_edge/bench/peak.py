"""The machine's arithmetic peak, measured with a micro-kernel: what "share of peak" is a share of.

A library GEMM is not the limit (ONNX Runtime's reaches ~77% of it on FP32 here, OpenVINO's
convolutions ~91%), so the peak comes from a loop of independent multiply-accumulate
instructions, one accumulator chain per register, compiled here with the system C compiler
and run on every thread the benchmark gives the models. Per precision the widest instruction
set the CPU has wins (AVX-512 first); ops count a multiply-accumulate as 2:

  fp32  avx512       _mm512_fmadd_ps                16 lanes x 2 FLOP = 32
        avx2         _mm256_fmadd_ps                 8 lanes x 2 FLOP = 16
  bf16  avx512_bf16  _mm512_dpbf16_ps               32 products + 32 sums into FP32 = 64
  int8  avx512_vnni  _mm512_dpbusd_epi32            64 u8 x s8 products + 64 sums = 128
        avx_vnni     _mm256_dpbusd_avx_epi32        32 u8 x s8 products + 32 sums = 64
        avx2         _mm256_maddubs_epi16, then     32 u8 x s8 products, summed in pairs into int16,
                     _mm256_madd_epi16 by ones,     widened to int32 in pairs (x 1: no product counted),
                     _mm256_add_epi32               added to the accumulator: 32 MACs = 64 in 3 instructions

The AVX2 INT8 step is ONNX Runtime's own u8 x s8 inner step on CPUs without VNNI (MLAS's
QGEMM kernels: VPMADDUBSW, VPMADDWD with a register of 1s, VPADDD), so its peak is what those
kernels could reach. Each kernel is compiled on its own with its instruction set's -m flags:
a compiler that lacks one falls back to the next narrower kernel the CPU has.

On the 2-core Zen 4 VM this gives 235 GFLOP/s FP32, 470 BF16, 940 GOP/s INT8: one 512-bit
instruction per cycle per core at 3.67 GHz; on the 2-core AVX2 Zen 3 EPYC (docs/cpu.md) FP32
and INT8 come from the AVX2 kernels. A precision whose instructions the CPU (or the compiler)
lacks has no peak (None), and neither has any precision without a C compiler.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .fingerprint import cpu_flags


@dataclass(frozen=True)
class Variant:
    """One precision's kernel on one instruction set: C declarations of the operands, one accumulate step
    (``acc[k]`` is the chain's accumulator), the accumulator type, its zero, a scalar from it, ops per step."""

    isa: str  # the name describe() and the report give
    flags: tuple[str, ...]  # /proc/cpuinfo flags it needs, all of them
    compile: tuple[str, ...]  # the C compiler's -m flags for them
    instruction: str
    setup: str
    step: str
    vector: str
    zero: str
    total: str
    ops: int


AVX512 = ("-mavx512f", "-mavx512bw")
# precision -> its variants, the widest first
KERNELS = {
    "fp32": (
        Variant("avx512", ("avx512f",), AVX512, "512-bit FMA", "__m512 a = _mm512_set1_ps(1e-7f), b = _mm512_set1_ps(0.999f);",
                "_mm512_fmadd_ps(a, b, acc[k])", "__m512", "_mm512_setzero_ps()", "_mm512_reduce_add_ps(acc[k])", 32),
        Variant("avx2", ("avx2", "fma"), ("-mavx2", "-mfma"), "256-bit FMA", "__m256 a = _mm256_set1_ps(1e-7f), b = _mm256_set1_ps(0.999f);",
                "_mm256_fmadd_ps(a, b, acc[k])", "__m256", "_mm256_setzero_ps()", "_mm256_cvtss_f32(acc[k])", 16),
    ),
    "bf16": (
        Variant("avx512_bf16", ("avx512_bf16",), (*AVX512, "-mavx512bf16"), "512-bit VDPBF16PS",
                "__m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);",
                "_mm512_dpbf16_ps(acc[k], a, b)", "__m512", "_mm512_setzero_ps()", "_mm512_reduce_add_ps(acc[k])", 64),
    ),
    "int8": (
        Variant("avx512_vnni", ("avx512_vnni",), (*AVX512, "-mavx512vnni"), "512-bit VPDPBUSD",
                "__m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(1);", "_mm512_dpbusd_epi32(acc[k], a, b)",
                "__m512i", "_mm512_setzero_si512()", "(double)_mm512_reduce_add_epi32(acc[k])", 128),
        Variant("avx_vnni", ("avx_vnni",), ("-mavx2", "-mavxvnni"), "256-bit VPDPBUSD (AVX-VNNI)",
                "__m256i a = _mm256_set1_epi8(1), b = _mm256_set1_epi8(1);", "_mm256_dpbusd_avx_epi32(acc[k], a, b)",
                "__m256i", "_mm256_setzero_si256()", "(double)_mm256_cvtsi256_si32(acc[k])", 64),
        # the u8 operand is the accumulator itself: the products then differ per chain and per iteration,
        # so the compiler can neither hoist them out of the loop nor share them between chains
        Variant("avx2", ("avx2",), ("-mavx2",), "256-bit VPMADDUBSW + VPMADDWD + VPADDD",
                "__m256i b = _mm256_set1_epi8(1), ones = _mm256_set1_epi16(1);",
                "_mm256_add_epi32(acc[k], _mm256_madd_epi16(_mm256_maddubs_epi16(acc[k], b), ones))",
                "__m256i", "_mm256_setzero_si256()", "(double)_mm256_cvtsi256_si32(acc[k])", 64),
    ),
}  # fmt: skip
CHAINS = (
    12  # independent accumulators: more than latency x throughput, so the loop runs at throughput (16 ymm registers hold them)
)


def _source(precision: str, variant: Variant) -> str:
    """``peak_<precision>``; the accumulators are named variables so that they live in registers."""
    names = [f"acc{i}" for i in range(CHAINS)]
    steps = "\n".join(
        f'        {a} = {variant.step.replace("acc[k]", a)}; __asm__ volatile("" : "+v"({a}));' for a in names
    )  # the empty asm keeps each chain opaque: the compiler can neither fold nor drop it
    return f"""#include <immintrin.h>

double peak_{precision}(long iterations) {{
    {variant.setup}
    {variant.vector} {", ".join(f"{a} = {variant.zero}" for a in names)};
    for (long i = 0; i < iterations; i++) {{
{steps}
    }}
    return {" + ".join(variant.total.replace("acc[k]", a) for a in names)};
}}
"""


def _function(folder: Path, precision: str, variant: Variant) -> Callable | None:
    """The compiled kernel, or None without a C compiler or where it cannot compile this instruction set."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source, library = folder / f"peak_{precision}_{variant.isa}.c", folder / f"peak_{precision}_{variant.isa}.so"
    source.write_text(_source(precision, variant))
    built = subprocess.run(
        [compiler, "-O3", *variant.compile, "-shared", "-fPIC", str(source), "-o", str(library)], capture_output=True
    )
    if built.returncode != 0:
        return None
    function = getattr(ctypes.CDLL(str(library)), f"peak_{precision}")
    function.restype, function.argtypes = ctypes.c_double, [ctypes.c_long]
    return function


def variants_for(precision: str, flags: set[str]) -> list[Variant]:
    """The precision's variants whose instructions the CPU has, the widest first."""
    return [v for v in KERNELS[precision] if set(v.flags) <= flags]


@dataclass
class Kernel:
    """One precision's micro-kernel as a workload: ``run()`` does ``ops`` operations on ``threads`` threads at once."""

    precision: str
    run: Callable[[], None]
    ops: float
    variant: Variant


def kernels(threads: int, call_ms: float = 20.0) -> dict[str, Kernel]:
    """A kernel per precision this CPU and compiler can run, each call about ``call_ms`` long on an idle machine.

    Timed interleaved with the models (:func:`fcn_edge.bench.suite.run_size`), a burst of load elsewhere
    slows both alike, so the share of peak stays a ratio measured in one run.
    """
    flags, found = cpu_flags(), {}
    with tempfile.TemporaryDirectory(prefix="fcn_edge_peak_", ignore_cleanup_errors=True) as folder:
        for precision in KERNELS:
            # the widest the compiler builds too (loaded, a library outlives its file)
            built = ((v, _function(Path(folder), precision, v)) for v in variants_for(precision, flags))
            variant, function = next(((v, f) for v, f in built if f is not None), (None, None))
            if function is None:
                continue
            iterations = _iterations(function, call_ms / 1000)
            ops = threads * iterations * CHAINS * variant.ops
            found[precision] = Kernel(precision, _on_threads(function, iterations, threads), ops, variant)
    return found


def _iterations(function, seconds: float) -> int:
    """How many loop iterations take about ``seconds`` on one thread (best of a few tries: load only slows it)."""
    iterations, elapsed = 1000, 0.0
    while elapsed < seconds / 10:
        iterations *= 4
        started = time.perf_counter()
        function(iterations)
        elapsed = time.perf_counter() - started
    fastest = min(_timed(function, iterations) for _ in range(3))
    return max(1, int(iterations * seconds / fastest))


def _timed(function: Callable, *args: object) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def _on_threads(function, iterations: int, threads: int) -> Callable[[], None]:
    def run() -> None:  # ctypes releases the GIL during the call: the threads run at once
        workers = [threading.Thread(target=function, args=(iterations,)) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    return run


def describe(threads: int, found: dict[str, Kernel]) -> str:
    if not found:
        return "not measured: no C compiler, or an x86-64 CPU without AVX2 or AVX-512"
    used = ", ".join(f"{p} {k.variant.instruction} [{k.variant.isa}]" for p, k in found.items())
    return (
        f"micro-kernel: {CHAINS} independent multiply-accumulate chains per thread ({used}), "
        f"{threads} threads, timed interleaved with the models; fcn_edge.bench.peak"
    )
