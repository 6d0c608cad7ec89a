"""Latency of every available backend x precision for the default (or given) model, against the machine's peak.

Prints a table, writes JSON and a PNG chart under benchmarks/, and with --check compares
the in-run normalised latencies against this machine class's committed baseline. Every row
is timed interleaved with the others (figures from the quieter half of the rounds), and its
achieved rate is given as a share of the peak a micro-kernel reaches for its precision in the
same rounds (fcn_edge.bench.peak; kept in the JSON).

  fcn-edge bench                        # table + benchmarks/results/<class>.{json,png}
  fcn-edge bench --check                # exit 1 if slower than the baseline
  fcn-edge bench --update-baseline --reason "new ORT release"
  fcn-edge bench --sizes 512x1024 --reference-int8 old/default.int8.onnx   # an older artifact, same run
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fcn_edge.atomic import ensure_folder, write_json_atomic
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.cli import HelpFormatter, model_size, nonempty_path, positive_int
from fcn_edge.paths import DEFAULT_CHECKPOINT, ENGINES_DIR

DEFAULT_SIZES = ((256, 512), (512, 1024), (480, 640))  # (H, W); tables name them as cameras do, WxH


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fcn-edge bench", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", type=nonempty_path, default=DEFAULT_CHECKPOINT)
    p.add_argument(
        "--int8-model", type=nonempty_path, help="the INT8 ONNX Runtime artifact (default: engines/<checkpoint stem>.int8.onnx)"
    )
    p.add_argument(
        "--sizes",
        type=model_size,
        nargs="+",
        default=list(DEFAULT_SIZES),
        metavar="HxW",
        help="default: 256x512 512x1024 480x640",
    )
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds per size (the quieter half count)")
    p.add_argument(
        "--reference-int8",
        type=nonempty_path,
        help="another INT8 .onnx to time on ONNX Runtime in the same run (row ort-int8-reference)",
    )
    p.add_argument(
        "--reference-fp32",
        type=nonempty_path,
        help="another FP32 .onnx (row ort-fp32-reference); labels agreement is then measured against it",
    )
    p.add_argument("--out", type=nonempty_path, default=Path("runs/benchmark"), help="folder for JSON and PNG")
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="write benchmarks/results/ of the working folder (committed, docs/benchmarks.md links it) instead of --out",
    )
    p.add_argument("--check", action="store_true", help="compare with the committed baseline; exit 1 if slower")
    p.add_argument("--update-baseline", action="store_true", help="record this run as the baseline")
    p.add_argument("--reason", default="", help="why the baseline changes (required with --update-baseline)")
    return p.parse_args(argv)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.update_baseline and not args.reason.strip():
        raise FcnEdgeError("--update-baseline needs --reason '...': say why the old baseline no longer holds")
    if args.update_docs:
        args.out = Path("benchmarks") / "results"
    ensure_folder(args.out, "--out")  # now, not after minutes of timing
    from fcn_edge.bench import baselines, peak, report
    from fcn_edge.bench.fingerprint import fingerprint
    from fcn_edge.bench.suite import backends_for, reference_backends, run_size
    from fcn_edge.checkpoint import load_checkpoint
    from fcn_edge.export import export_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    int8 = args.int8_model or ENGINES_DIR / f"{args.checkpoint.stem}.int8.onnx"
    if not int8.is_file():
        raise FcnEdgeError(f"INT8 artifact {int8} not found: build it with fcn-edge build --int8 (or pass --int8-model)")
    for path, flag in ((args.reference_int8, "--reference-int8"), (args.reference_fp32, "--reference-fp32")):
        if path is not None and not path.is_file():
            raise FcnEdgeError(f"{flag} {path} does not exist: pass an .onnx artifact, or leave the flag out")
    machine = fingerprint()
    kernels = peak.kernels(args.threads)
    with tempfile.TemporaryDirectory(prefix="fcn_edge_bench_") as tmp:
        fp32 = Path(tmp) / f"{args.checkpoint.stem}.fp32.onnx"
        export_checkpoint(args.checkpoint, fp32)
        backends = backends_for(checkpoint, fp32, int8, args.threads) + reference_backends(
            args.reference_fp32, args.reference_int8, args.threads
        )
        model = checkpoint.build()
        results = [run_size(backends, model, h, w, args.threads, rounds=args.rounds, quiet=True, kernels=kernels)
                   for h, w in args.sizes]  # fmt: skip
    peaks = {"method": peak.describe(args.threads, kernels), "isa": {p: k.variant.isa for p, k in kernels.items()},
             "gops": {f"{w}x{h}": r.peak for (h, w), r in zip(args.sizes, results)}}  # fmt: skip
    rows = [row for result in results for row in result.rows()]
    normalised = {k: v for result in results for k, v in result.normalised().items() if "-reference@" not in k}
    print(report.table(rows))
    for size, gops in peaks["gops"].items():
        print(f"peak at {size}'s rounds: " + ", ".join(f"{p} {g:.0f}" for p, g in gops.items()) + " GOP/s")
    print(f"({peaks['method']})")
    payload = {"fingerprint": machine, "checkpoint": str(args.checkpoint), "threads": args.threads, "peak": peaks, "rows": rows,
               "normalised": normalised, "reference": "ONNX Runtime FP32 MatMul 1024^3, same threads, interleaved",
               "artifacts": {"int8": str(int8), "reference_int8": str(args.reference_int8 or ""),
                             "reference_fp32": str(args.reference_fp32 or "")}}  # fmt: skip
    stem = args.out / machine["machine_class"]
    write_json_atomic(stem.with_suffix(".json"), payload)
    report.chart(rows, stem.with_suffix(".png"), title=f"{machine['machine_class']} ({args.threads} threads)")
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    if args.update_baseline:
        print(f"baseline: {baselines.save_baseline(machine, normalised, payload['reference'], args.reason)}")
    if args.check:
        verdicts = baselines.compare(baselines.load_baseline(machine["machine_class"]), normalised)
        print("\n".join(v.line() for v in verdicts))
        return 0 if all(v.ok for v in verdicts) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
