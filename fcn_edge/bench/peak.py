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
from pathlib import Path

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


def _rate(function, threads: int, ops_per_iteration: int, seconds: float) -> float:
    """Operations per second of ``function`` on ``threads`` threads at once (ctypes releases the GIL in the call)."""
    iterations, elapsed = 1000, 0.0
    while elapsed < seconds / 10:  # calibrate the iteration count to about ``seconds``
        iterations *= 4
        started = time.perf_counter()
        function(iterations)
        elapsed = time.perf_counter() - started
    iterations = max(1, int(iterations * seconds / elapsed))
    workers = [threading.Thread(target=function, args=(iterations,)) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return threads * iterations * ops_per_iteration / (time.perf_counter() - started)


def measure(threads: int, seconds: float = 0.3, repeats: int = 5) -> dict:
    """Peak GFLOP/s (GOP/s for int8) per precision on ``threads`` threads, best of ``repeats``; None where unmeasurable."""
    with tempfile.TemporaryDirectory(prefix="fcn_edge_peak_") as tmp:
        library = _library(Path(tmp))
        peaks: dict[str, float | None] = {}
        for precision, kernel in KERNELS.items():
            if library is None or not _cpu_has(precision):
                peaks[precision] = None
                continue
            ops = CHAINS * kernel["ops"]
            function = getattr(library, f"peak_{precision}")
            function.restype, function.argtypes = ctypes.c_double, [ctypes.c_long]
            peaks[precision] = max(_rate(function, threads, ops, seconds) for _ in range(repeats)) / 1e9
    method = (
        f"micro-kernel: {CHAINS} independent 512-bit multiply-accumulate chains (FMA / DPBF16PS / VPDPBUSD) per thread, "
        f"{threads} threads, best of {repeats}; fcn_edge.bench.peak"
    )
    return {"gops": peaks, "threads": threads, "method": method if library is not None else "no C compiler: not measured"}


def best(*measurements: dict) -> dict:
    """The higher figure per precision of several measurements (taken before and after a run: load elsewhere only lowers it)."""
    gops = {p: max((m["gops"][p] for m in measurements if m["gops"][p] is not None), default=None) for p in KERNELS}
    return {**measurements[0], "gops": gops, "measurements": len(measurements)}
