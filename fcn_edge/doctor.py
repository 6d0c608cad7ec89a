"""``fcn-edge doctor``: what this machine has for GPU inference, and whether each GPU path works.

No machine the project is developed on has a GPU, so this is the one command that checks
the GPU code for real. It reports the NVIDIA driver and the CUDA it runs, the GPU, TensorRT,
cuda-python, PyCUDA, ONNX Runtime's providers and torch, then runs every GPU path that is
installed, each as one row:

- ``cuda-python`` / ``pycuda``: a frame through pinned and mapped memory with async copies,
  byte for byte (:mod:`fcn_edge.backends.cuda.selftest`);
- ``torch-amp``: one mixed-precision training step of the default architecture;
- ``onnxruntime-cuda``: the default model on CUDAExecutionProvider, labels against the CPU;
- ``tensorrt-fp32/fp16/int8``: the default model built into engines and run, labels against
  the same graph on the CPU (:mod:`fcn_edge.backends.tensorrt.selftest`);
- ``stream``: 300 synthetic frames through the stream loop on the GPU runner.

A path that is not installed is a ``skip`` row saying what to install; one that is installed
and fails is a ``FAIL`` row. Output: one table, then the same as JSON. Exit status: 0 when no
row failed, 1 when one did, 2 for a usage error. Without a GPU it only reports, in about a
second. The default model's CPU artifacts come from ``engines/`` (``fcn-edge build
--int8``), or are built into a temporary folder when missing.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .cli import nonempty_path
from .atomic import check_output, json_text, write_json_atomic
from .capabilities import TABLE, precisions
from .cli import HelpFormatter
from .errors import FcnEdgeError, run_cli
from .paths import DEFAULT_CHECKPOINT, ENGINES_DIR, default_input
from .scratch import scratch_folder
from .standin import ENV as STANDIN_ENV

STREAM_FRAMES = 300
SELFTEST_SCENES = 8  # held-out synthetic scenes each TensorRT precision is compared on
DISTRIBUTIONS = {  # what pip calls the packages a row reports, first installed wins
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-bindings", "tensorrt-cu12-bindings", "tensorrt-cu13-bindings"),
    "cuda-python": ("cuda-python", "cuda-bindings"),
    "pycuda": ("pycuda",),
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
    "torch": ("torch",),
}  # fmt: skip
INSTALL = {
    "tensorrt": "pip install -e '.[gpu-cu12]' ('.[gpu-cu13]' on a CUDA 13 driver; JetPack's on Jetson)",
    "cuda-python": "pip install -e '.[gpu-cu12]'",
    "pycuda": "pip install -e '.[pycuda]' (needs the CUDA toolkit)",
    "torch": "pip install -e '.[train]' (the CUDA build of torch for the AMP check)",
}
DRIVER_FOR_CUDA = {12: 525, 13: 580}  # minimum Linux driver per CUDA major (CUDA minor-version compatibility)


@dataclass
class Row:
    name: str
    status: str  # "info" | "ok" | "FAIL" | "skip"
    detail: str
    seconds: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)


class Skip(Exception):
    """A path that is not installed here: its message says what would install it."""


def installed(name: str) -> str | None:
    """The installed version of a package, by any of its pip names; no import."""
    for dist in DISTRIBUTIONS[name]:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def driver() -> tuple[str | None, tuple[int, int] | None]:
    """(NVIDIA driver version, CUDA version the driver supports), each None when absent; no CUDA binding needed."""
    version = None
    proc = Path("/proc/driver/nvidia/version")
    if proc.is_file():
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", proc.read_text())
        version = match[1] if match else None
    try:
        lib = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
    except OSError:
        return version, None
    value = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(value)) != 0 or not value.value:
        return version, None
    return version, (value.value // 1000, value.value % 1000 // 10)


def report() -> tuple[list[Row], Any]:
    """The installation rows, and the GPU found (None without one)."""
    from .backends.cuda import find_gpu

    rows = []
    version, cuda = driver()
    rows.append(
        Row("driver", "info", f"NVIDIA {version or 'driver not found'}; CUDA {'.'.join(map(str, cuda)) if cuda else 'none'}")
    )
    gpu, why = find_gpu()
    rows.append(
        Row(
            "gpu",
            "info",
            f"{gpu.name}, compute {gpu.compute_capability}{', integrated (mapped memory)' if gpu.integrated else ''}"
            if gpu
            else why,
        )
    )
    standin = os.environ.get(STANDIN_ENV)
    if standin:  # tests and CI: every TensorRT/CUDA row below ran on fcn_edge.standin, not on a GPU
        rows.append(Row("stand-in", "info", f"{STANDIN_ENV}={standin}: TensorRT, cuda-python and PyCUDA are STAND-INS"))
    for name, install in INSTALL.items():
        rows.append(Row(name, "info", installed(name) or f"not installed: {install}"))
    import onnxruntime as ort

    rows.append(Row("onnxruntime", "info", f"{ort.__version__}, providers {', '.join(ort.get_available_providers())}"))
    rows.append(_cpu_precisions_row())
    rows += _cuda_major_rows(cuda)
    return rows, gpu


def _cpu_precisions_row() -> Row:
    """What ``fcn-edge build`` can make for this CPU, as the capability table, the runtimes installed and the CPU's
    flags say (read, not probed: opening OpenVINO costs seconds, and this path answers in about one)."""
    openvino = importlib.util.find_spec("openvino") is not None
    runnable = [c for c in TABLE if c.backend == "onnxruntime" or (c.backend == "openvino" and openvino
                and (c.precision != "bf16" or _cpu_has_bf16()))]  # fmt: skip
    missing = [f"{c.backend} {c.precision} (needs {c.needs})" for c in TABLE if c.backend != "tensorrt" and c not in runnable]
    detail = ", ".join(f"{c.backend} {c.precision}" for c in runnable) + ("; not here: " + ", ".join(missing) if missing else "")
    return Row("cpu-precisions", "info", detail)


def _cpu_has_bf16() -> bool:
    """AVX512_BF16 or AMX in /proc/cpuinfo's flags (False where there is none to read)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cuda_major_rows(cuda: tuple[int, int] | None) -> list[Row]:
    """A FAIL row for each package built for a newer CUDA major than the driver runs (cudaErrorInsufficientDriver)."""
    if cuda is None:
        return []
    rows = []
    for name, version in (("cuda-python", installed("cuda-python")), ("tensorrt", _tensorrt_cuda_major())):
        major = int(str(version).split(".")[0]) if version else None
        if major and major > cuda[0]:
            rows.append(Row(f"{name}-vs-driver", "FAIL", f"{name} for CUDA {major} needs driver >= {DRIVER_FOR_CUDA.get(major, '?')}, this "
                            f"driver runs CUDA {cuda[0]}.{cuda[1]}: pip install -e '.[gpu-cu{cuda[0]}]'"))  # fmt: skip
    return rows


def _tensorrt_cuda_major() -> int | None:
    """12 or 13 for pip's TensorRT wheels (``tensorrt`` itself pulls ``tensorrt-cu13``); None for JetPack's and others."""
    for major in (13, 12):
        for dist in (f"tensorrt-cu{major}", f"tensorrt-cu{major}-bindings"):
            try:
                importlib.metadata.version(dist)
                return major
            except importlib.metadata.PackageNotFoundError:
                continue
    return None


def run_path(name: str, probe: Callable[[], dict[str, Any]]) -> Row:
    """One GPU path as a row: ok with its facts, skip with what is missing, FAIL with the error."""
    started = time.perf_counter()
    try:
        facts = probe()
    except Skip as why:
        return Row(name, "skip", str(why))
    except Exception as error:  # a failure of an installed path is the finding, whatever raised it
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        return Row(name, "FAIL", f"{type(error).__name__}: {detail}", round(time.perf_counter() - started, 1),
                   {"traceback": traceback.format_exc(limit=6)})  # fmt: skip
    ok = facts.pop("ok", True)
    detail = facts.pop("detail", ", ".join(f"{k} {v}" for k, v in facts.items() if not isinstance(v, dict)))
    return Row(name, "ok" if ok else "FAIL", detail, round(time.perf_counter() - started, 1), facts)


class Paths:
    """The GPU paths, sharing the default model's CPU graphs and the engines built from them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._graphs: dict[str, Path] | None = None
        self.engines: dict[str, Path] = {}

    def graphs(self) -> dict[str, Path]:
        """FP32, FP16 and TensorRT Q/DQ graphs of the default model, from engines/ or built here once."""
        if self._graphs is None:
            folder = default_input(ENGINES_DIR / "default.int8.trt-qdq.onnx", "default model's graphs").parent
            if not (folder / "default.int8.trt-qdq.onnx").is_file():
                folder = self.workdir / "cpu"
                self._build_cpu_artifacts(folder)
            from .quantize import fp16

            fp16_graph = self.workdir / "default.fp16.onnx"
            fp16.to_fp16(folder / "default.int8.calib.onnx", fp16_graph)
            self._graphs = {
                "fp32": folder / "default.int8.calib.onnx",
                "fp16": fp16_graph,
                "int8": folder / "default.int8.trt-qdq.onnx",
            }
        return self._graphs

    def _build_cpu_artifacts(self, folder: Path) -> None:
        checkpoint = default_input(DEFAULT_CHECKPOINT, "checkpoint")
        if not checkpoint.is_file():
            raise FcnEdgeError(
                f"no default model here (engines/, {DEFAULT_CHECKPOINT}) and this install ships none: run from the project "
                "folder, or pip install -e . in a clone of it"
            )
        command = [
            sys.executable,
            "-m",
            "fcn_edge.cli",
            "build",
            "--int8",
            "--checkpoint",
            str(checkpoint),
            "--backend",
            "onnxruntime",
            "--engines-dir",
            str(folder),
            "--no-progress",
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise FcnEdgeError(f"building the default model's CPU artifacts failed ({' '.join(command)}): {last}")

    def cuda(self, binding: str) -> Callable[[], dict[str, Any]]:
        def probe() -> dict[str, Any]:
            if not importlib.util.find_spec("pycuda" if binding == "pycuda" else "cuda"):
                extra = "'.[pycuda]' (needs the CUDA toolkit)" if binding == "pycuda" else "'.[gpu-cu12]'"
                raise Skip(f"{binding} is not installed: pip install -e {extra}")
            from .backends.cuda.selftest import round_trips

            return round_trips(binding)

        return probe

    def torch_amp(self) -> dict[str, Any]:
        if not importlib.util.find_spec("torch"):
            raise Skip("torch is not installed: pip install -e '.[train]' with the CUDA build of torch")
        import torch
        from torch.nn import functional as F

        from .models import ModelConfig, build_model

        if not torch.cuda.is_available():
            raise Skip(
                f"torch {torch.__version__} has no CUDA (torch.version.cuda is {torch.version.cuda}): install its CUDA build"
            )
        model = build_model(ModelConfig(num_classes=8)).cuda().train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        scaler = torch.amp.GradScaler("cuda")
        images = torch.randn(4, 3, 256, 256, device="cuda")
        target = torch.randint(0, 8, (4, 256, 256), device="cuda")
        with torch.autocast("cuda", dtype=torch.float16):
            loss = F.cross_entropy(model(images), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        torch.cuda.synchronize()
        return {"ok": bool(torch.isfinite(loss)), "loss": round(float(loss), 4), "device": torch.cuda.get_device_name()}

    def onnxruntime_cuda(self) -> dict[str, Any]:
        import numpy as np
        import onnxruntime as ort

        from .data.synthetic import HELDOUT_SEED, render_scene

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise Skip("this onnxruntime has no CUDA provider: pip install onnxruntime-gpu (instead of onnxruntime)")
        graph = str(self.graphs()["fp32"])
        gpu = ort.InferenceSession(graph, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if gpu.get_providers()[0] != "CUDAExecutionProvider":
            return {
                "ok": False,
                "detail": "the CUDA provider did not load (ONNX Runtime fell back to the CPU): install the CUDA and cuDNN it needs",
            }
        cpu = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        name = cpu.get_inputs()[0].name
        same = total = 0
        for index in range(4):
            feed = {name: render_scene(np.random.default_rng(HELDOUT_SEED + index), (256, 512))[0][None]}
            same += int((gpu.run(["labels"], feed)[0] == cpu.run(["labels"], feed)[0]).sum())
            total += 256 * 512
        return {"ok": same / total >= 0.98, "agreement": round(same / total, 5)}

    def tensorrt(self, precision: str) -> Callable[[], dict[str, Any]]:
        def probe() -> dict[str, Any]:
            from .backends.tensorrt import api

            try:
                api.import_tensorrt()
            except FcnEdgeError as error:
                raise Skip(str(error)) from None
            import numpy as np

            from .backends.tensorrt.selftest import LATENCY, SCENE, run_precision
            from .data.synthetic import HELDOUT_SEED, render_scene

            frames = [render_scene(np.random.default_rng(HELDOUT_SEED + index), SCENE)[0] for index in range(SELFTEST_SCENES)]
            latency_frame = render_scene(np.random.default_rng(HELDOUT_SEED), LATENCY)[0]
            facts = run_precision(precision, self.graphs()[precision], self.workdir, frames, latency_frame)
            self.engines[precision] = self.workdir / f"default.{precision}.engine"
            return facts

        return probe

    def stream(self) -> dict[str, Any]:
        from .backends import open_runner
        from .stream.overlay import Overlay
        from .stream.pipeline import Stream, StreamOptions
        from .stream.sources import SyntheticSource

        engine = next((self.engines[p] for p in precisions("tensorrt") if p in self.engines), None)
        if engine is None:
            raise Skip("no GPU runner: needs a TensorRT engine from the rows above (TensorRT not installed or its builds failed)")
        source = SyntheticSource((640, 480), fps=0)
        source.open()
        runner = open_runner(engine).activate()
        try:
            options = StreamOptions(max_frames=STREAM_FRAMES, status_interval=0)
            stats = Stream(source, runner, Overlay(runner.palette or [(0, 0, 0)] * 8), [], options, log=lambda _: None).run()
        finally:
            runner.deactivate()
        return {"ok": stats.frames == STREAM_FRAMES, "frames": stats.frames, "fps": round(stats.fps, 1), "engine": engine.name}


def run(workdir: Path) -> list[Row]:
    rows, gpu = report()
    if gpu is None:
        return rows + [Row("gpu-paths", "skip", "no CUDA GPU: every GPU path skipped (see the gpu row)")]
    paths = Paths(workdir)
    probes = [("cuda-python", paths.cuda("cuda-python")), ("pycuda", paths.cuda("pycuda")), ("torch-amp", paths.torch_amp),
              ("onnxruntime-cuda", paths.onnxruntime_cuda)]  # fmt: skip
    probes += [(f"tensorrt-{p}", paths.tensorrt(p)) for p in reversed(precisions("tensorrt"))] + [("stream", paths.stream)]
    return rows + [run_path(name, probe) for name, probe in probes]


def table(rows: list[Row]) -> str:
    lines = [f"{'check':<22}{'status':<7}{'seconds':>8}  detail"]
    for row in rows:
        seconds = "" if row.seconds is None else f"{row.seconds:.1f}"
        lines.append(f"{row.name:<22}{row.status:<7}{seconds:>8}  {row.detail}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fcn-edge doctor", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--json", type=nonempty_path, metavar="FILE", help="also write the JSON to this file (atomically)")
    return parser.parse_args(argv)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.json is not None:
        check_output(args.json, "--json")  # before the checks: a folder or a missing one is found now, not after them
    started = time.perf_counter()
    with scratch_folder("doctor") as workdir:
        rows = run(Path(workdir))
    failed = [row.name for row in rows if row.status == "FAIL"]
    result = {"rows": [asdict(row) for row in rows], "failed": failed, "seconds": round(time.perf_counter() - started, 1)}
    print(table(rows))
    print(json_text(result, indent=None), end="")
    if args.json:
        write_json_atomic(args.json, result, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
