"""The machine's arithmetic peak, measured with a micro-kernel: what "share of peak" is a share of.

A library GEMM is not the limit (ONNX Runtime's reaches ~77% of it on FP32 here, OpenVINO's
convolutions ~91%), so the peak comes from a loop of independent multiply-accumulate
instructions, one accumulator chain per register, compiled here with the system C compiler
and run on every thread the benchmark gives the models:

  fp32  _mm512_fmadd_ps      16 lanes x 2 FLOP
  bf16  _mm512_dpbf16_ps     32 products + 32 sums into FP32   (AVX512_BF16)
  int8  _mm512_dpbusd_epi32  64 u8 x s8 products + 64 sums     (AVX512_VNNI)

On the 2-core Zen 4 VM this gives 235 GFLOP/s FP32, 470 BF16, 940 GOP/s INT8: one 512-bit
instruction per cycle per core at 3.67 GHz. A precision whose instructions the CPU (or the
compiler) lacks has no peak (None), and neither has any precision without a C compiler.
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

# precision -> C declarations of the operands, one accumulate step, the accumulator type, its zero, its sum, ops per step
KERNELS = {
    "fp32": dict(setup="__m512 a = _mm512_set1_ps(1e-7f), b = _mm512_set1_ps(0.999f);", step="_mm512_fmadd_ps(a, b, acc[k])",
                 vector="__m512", zero="_mm512_setzero_ps()", total="_mm512_reduce_add_ps(acc[k])", ops=32),
    "bf16": dict(setup="__m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);",
                 step="_mm512_dpbf16_ps(acc[k], a, b)", vector="__m512", zero="_mm512_setzero_ps()",
                 total="_mm512_reduce_add_ps(acc[k])", ops=64),
    "int8": dict(setup="__m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(1);", step="_mm512_dpbusd_epi32(acc[k], a, b)",
                 vector="__m512i", zero="_mm512_setzero_si512()", total="(double)_mm512_reduce_add_epi32(acc[k])", ops=128),
}  # fmt: skip
CPU_FLAGS = {"fp32": "avx512f", "bf16": "avx512_bf16", "int8": "avx512_vnni"}  # /proc/cpuinfo names
CHAINS = 12  # independent accumulators: more than latency x throughput, so the loop runs at throughput
COMPILE = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vnni", "-mavx512bf16", "-shared", "-fPIC"]


def _source() -> str:
    """One function per precision; the accumulators are named variables so that they live in registers."""
    functions = []
    for name, k in KERNELS.items():
        names = [f"acc{i}" for i in range(CHAINS)]
        steps = "\n".join(
            f"        {a} = {k['step'].replace('acc[k]', a)}; __asm__ volatile(\"\" : \"+v\"({a}));" for a in names
        )  # the empty asm keeps each chain opaque: the compiler can neither fold nor drop it
        functions.append(f"""double peak_{name}(long iterations) {{
    {k["setup"]}
    {k["vector"]} {", ".join(f"{a} = {k['zero']}" for a in names)};
    for (long i = 0; i < iterations; i++) {{
{steps}
    }}
    return {" + ".join(k["total"].replace("acc[k]", a) for a in names)};
}}""")
    return "#include <immintrin.h>\n\n" + "\n\n".join(functions) + "\n"


def _library(folder: Path) -> ctypes.CDLL | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source, library = folder / "peak.c", folder / "peak.so"
    source.write_text(_source())
    built = subprocess.run([compiler, *COMPILE, str(source), "-o", str(library)], capture_output=True)
    return ctypes.CDLL(str(library)) if built.returncode == 0 else None


def _cpu_has(precision: str) -> bool:
    info = Path("/proc/cpuinfo")
    return info.is_file() and f" {CPU_FLAGS[precision]}" in info.read_text()


@dataclass
class Kernel:
    """One precision's micro-kernel as a workload: ``run()`` does ``ops`` operations on ``threads`` threads at once."""

    precision: str
    run: Callable[[], None]
    ops: float


def kernels(threads: int, call_ms: float = 20.0) -> dict[str, Kernel]:
    """A kernel per precision this CPU and compiler can run, each call about ``call_ms`` long on an idle machine.

    Timed interleaved with the models (:func:`fcn_edge.bench.suite.run_size`), a burst of load elsewhere
    slows both alike, so the share of peak stays a ratio measured in one run.
    """
    with tempfile.TemporaryDirectory(prefix="fcn_edge_peak_", ignore_cleanup_errors=True) as folder:
        library = _library(Path(folder))  # loaded, it outlives its file
    found = {}
    for precision, kernel in KERNELS.items():
        if library is None or not _cpu_has(precision):
            continue
        function = getattr(library, f"peak_{precision}")
        function.restype, function.argtypes = ctypes.c_double, [ctypes.c_long]
        iterations = _iterations(function, call_ms / 1000)
        found[precision] = Kernel(precision, _on_threads(function, iterations, threads), threads * iterations * CHAINS * kernel["ops"])
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
        return "not measured: no C compiler, or a CPU without AVX-512"
    return (
        f"micro-kernel: {CHAINS} independent 512-bit multiply-accumulate chains (FMA / DPBF16PS / VPDPBUSD) per thread, "
        f"{threads} threads, timed interleaved with the models; fcn_edge.bench.peak"
    )
