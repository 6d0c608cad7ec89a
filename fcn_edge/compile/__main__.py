"""Turn a checkpoint or ONNX model into a deployable, verified artifact at the precision asked.

A TensorRT engine where a CUDA GPU and TensorRT are present, an ONNX Runtime model
everywhere else; always a table of what the precision cost in accuracy and bought in
speed, and a JSON sidecar next to the artifact. A second run with the same inputs and
options finds the sidecar up to date and skips the build. A checkpoint trained on your own
data calibrates on its dataset's train split and verifies on its val split (the dataset the
checkpoint records); --calib-dir, --calib-data and --val-data override.

  fcn-edge build --int8
  fcn-edge build --int8 --checkpoint runs/parts/best.pt   # -> engines/parts.int8.onnx
  fcn-edge build --onnx other.onnx --input-format tensor --mean 0.5 0.5 0.5 --std 0.5 0.5 0.5 --num-classes 4
  fcn-edge build --onnx person.onnx --input-format tensor-nhwc --num-classes 1 --threshold 0.6
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from fcn_edge.atomic import check_distinct
from fcn_edge.backends import BACKENDS
from fcn_edge.capabilities import PRECISIONS
from fcn_edge.cli import HelpFormatter, finite_float, model_size, nonempty, nonempty_path, shape
from fcn_edge.compile import pipeline, source
from fcn_edge.compile.foreign import ACTIVATIONS, DEFAULT_THRESHOLD, FORMATS
from fcn_edge.compile.options import Budget, BuildOptions
from fcn_edge.data.record import describe
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.paths import DEFAULT_CHECKPOINT, ENGINES_DIR, default_input, fallback_note
from fcn_edge.quantize.calibration import DEFAULT_DIR
from fcn_edge.quantize.statistics import METHODS
from fcn_edge.sidecar import artifact_paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fcn-edge build", description=__doc__, formatter_class=HelpFormatter)
    precision = p.add_mutually_exclusive_group()
    for name in PRECISIONS:
        precision.add_argument(f"--{name}", dest="precision", action="store_const", const=name)
    p.set_defaults(precision=None)
    p.epilog = (
        "Without --int8/--fp16/--bf16/--fp32: the fastest precision that meets the accuracy budget (like trtexec "
        "--best). --bf16: the FP32 graph run in BF16 by OpenVINO, on CPUs with AVX512_BF16 or AMX."
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=nonempty_path, help=f"fcn_edge checkpoint to export (default {DEFAULT_CHECKPOINT})")
    source.add_argument("--onnx", type=nonempty_path, help="an ONNX segmentation model, ours or any other")
    p.add_argument(
        "--name",
        type=nonempty,
        help="artifact base name (default: the run folder of a best.pt, else the checkpoint's or ONNX file's stem)",
    )
    foreign = p.add_argument_group("for an ONNX model without fcn_edge metadata")
    foreign.add_argument("--input-format", choices=FORMATS,
                         help="frame: uint8 NHWC BGR; tensor: float32 NCHW normalised; tensor-nhwc: float32 NHWC normalised "
                              "(TF/TFLite conversions)")  # fmt: skip
    foreign.add_argument("--mean", type=finite_float, nargs=3, help="per channel, on the 0..1 scale (default ImageNet's)")
    foreign.add_argument("--std", type=finite_float, nargs=3, help="per channel, on the 0..1 scale (default ImageNet's)")
    foreign.add_argument(
        "--channel-order", choices=("RGB", "BGR"), default=None, help="channel order the model expects (default RGB)"
    )
    classes = foreign.add_mutually_exclusive_group()
    classes.add_argument("--num-classes", type=int, help="1: a binary model with one output channel (background, foreground)")
    classes.add_argument("--classes", help="comma-separated class names, class 0 first")
    foreign.add_argument("--output-activation", choices=ACTIVATIONS,
                         help="a one-channel (binary) output holds: sigmoid (probabilities) or logits; default: sigmoid "
                              "when a Sigmoid node makes it, else this flag is needed")  # fmt: skip
    foreign.add_argument(
        "--threshold",
        type=finite_float,
        help=f"a one-channel output's foreground probability threshold, also for logits (default {DEFAULT_THRESHOLD})",
    )
    cal = p.add_argument_group("calibration (INT8)")
    cal.add_argument("--calib-dir", type=nonempty_path,
                     help=f"folder of .jpg/.png frames (default: the train split of the dataset the checkpoint records, "
                          f"else {DEFAULT_DIR}/)")  # fmt: skip
    cal.add_argument("--calib-method", choices=METHODS, default="percentile",
                     help="percentile (default): 99.99th percentile of |x|, the best plain INT8 on trained depthwise "
                          "models (docs/foreign.md); entropy: KL-optimal clipping (TensorRT's); max: no clipping")  # fmt: skip
    cal.add_argument(
        "--calib-size", type=model_size, default=(256, 512), help="HxW calibration frames are resized to (default 256x512)"
    )
    cal.add_argument(
        "--calib-data",
        metavar="NAME:ROOT",
        help="instead of --calib-dir: frames from a dataset's train split (voc:ROOT, cityscapes:ROOT, folder:ROOT)",
    )
    cal.add_argument("--calib-images", type=int, default=64, help="frames --calib-data samples, evenly spaced (default 64)")
    val = p.add_argument_group("verification data (default: the data the model is for; docs/compile.md)")
    val.add_argument(
        "--val-data",
        metavar="NAME:ROOT",
        help="labelled images to verify on and compute mIoU: voc:ROOT, cityscapes:ROOT, folder:ROOT or synthetic",
    )
    val.add_argument("--val-split", default="val", help="split of --val-data (default val)")
    val.add_argument(
        "--val-images", type=int, default=50, help="at most this many --val-data images, evenly spaced; 0: all (default 50)"
    )
    val.add_argument("--val-fraction", type=finite_float, metavar="F",
                     help="split a flat folder:ROOT of --calib-data/--val-data as train.py --val-fraction did "
                          "(default: the checkpoint's record)")  # fmt: skip
    val.add_argument("--split-seed", type=int, help="seed of the --val-fraction split (default: the checkpoint's, else 0)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: TensorRT when available, else the fastest CPU runtime installed (ONNX Runtime, OpenVINO), measured",
    )
    trt = p.add_argument_group("TensorRT")
    trt.add_argument("--min-shape", type=shape, help="input shape, e.g. 1x256x512x3 for a frame model")
    trt.add_argument("--opt-shape", type=shape)
    trt.add_argument("--max-shape", type=shape)
    trt.add_argument("--workspace", type=int, metavar="MB", help="builder workspace limit")
    trt.add_argument("--opt-level", type=int, help="builder optimization level 0-5")
    trt.add_argument("--dla-core", type=int)
    trt.add_argument("--timing-cache", type=nonempty_path)
    out = p.add_argument_group("output and budget")
    out.add_argument(
        "--engines-dir", type=nonempty_path, default=ENGINES_DIR, help="folder for the artifacts, relative to the working folder"
    )
    out.add_argument("--max-miou-drop", type=finite_float, default=1.0, help="mIoU points the artifact may lose against FP32")
    out.add_argument("--min-agreement", type=finite_float, default=98.0, help="percent of pixels that must keep the FP32 label")
    out.add_argument("--allow-accuracy-drop", action="store_true", help="write the artifact even when it misses the budget")
    out.add_argument(
        "--search-minutes",
        type=finite_float,
        default=5.0,
        help="time for the search that keeps quantized nodes in float when INT8 misses the budget (default 5; 0: no search)",
    )
    out.add_argument("--verify-scenes", type=int, default=32, help="held-out synthetic scenes to verify on")
    out.add_argument("--verify-size", type=model_size, default=(256, 512), help="HxW of the verification scenes")
    out.add_argument("--latency-size", type=model_size, default=(512, 1024), help="HxW the latencies are measured at")
    out.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1], metavar="N",
        help="also verify and time batches of N frames (one per camera: fcn-edge stream with N sources), e.g. 1 4; "
             "the sidecar records each size's agreement with batch 1 and its ms a frame",
    )  # fmt: skip
    out.add_argument("--force", action="store_true", help="rebuild even when the sidecar says the artifact is up to date")
    out.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def check_source_flags(args: argparse.Namespace) -> None:
    """The foreign model's flags out of range stop here, before any file is read (BuildOptions checks the rest)."""
    if args.std is not None and min(args.std) <= 0:
        raise FcnEdgeError(f"--std {' '.join(f'{v:g}' for v in args.std)} must be positive")
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise FcnEdgeError(f"--threshold {args.threshold} must be a probability between 0 and 1 (exclusive), also for logits")


def check_outputs(args: argparse.Namespace, backend, name: str) -> None:
    """No file the build may write (any precision it may try) is its model or --timing-cache; before any work."""
    model = ("--onnx", args.onnx) if args.onnx is not None else ("--checkpoint", args.checkpoint)
    dla = args.dla_core is not None and backend.name == "tensorrt"
    outputs = {}
    for precision in pipeline.candidate_precisions(args.precision, backend, dla):
        paths = artifact_paths(args.engines_dir, name, precision, backend.name)
        outputs.update({f"--engines-dir {path.name}": path for path in (*paths.all(), paths.sidecar)})
    check_distinct(dict([model, ("--timing-cache", args.timing_cache)]), outputs)


@run_cli
def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.onnx is None and args.checkpoint is None:
        args.checkpoint = default_input(DEFAULT_CHECKPOINT, "checkpoint")  # the project's, from another folder
    options = BuildOptions(
        precision=args.precision, calib_dir=args.calib_dir or default_input(DEFAULT_DIR, None), calib_method=args.calib_method,
        calib_size=args.calib_size, engines_dir=args.engines_dir,
        budget=Budget(args.max_miou_drop, args.min_agreement), allow_accuracy_drop=args.allow_accuracy_drop,
        force=args.force, min_shape=args.min_shape, opt_shape=args.opt_shape, max_shape=args.max_shape,
        workspace_mb=args.workspace, opt_level=args.opt_level, dla_core=args.dla_core, timing_cache=args.timing_cache,
        verify_scenes=args.verify_scenes, verify_size=args.verify_size, latency_size=args.latency_size,
        progress=not args.no_progress, calib_data=args.calib_data, calib_images=args.calib_images, val_data=args.val_data,
        val_split=args.val_split, val_images=args.val_images, search_minutes=args.search_minutes,
        val_fraction=args.val_fraction, split_seed=args.split_seed or 0, batch_sizes=tuple(args.batch_sizes),
    )  # fmt: skip
    check_source_flags(args)
    backend = pipeline.choose_backend(args.backend)
    classes = args.classes.split(",") if args.classes else None
    if args.onnx is not None:
        make_source, inputs = source.spec_from_onnx(
            args.onnx,
            args.name,
            args.input_format,
            args.mean,
            args.std,
            args.channel_order,
            classes,
            args.num_classes,
            args.output_activation,
            args.threshold,
        )
        if options.calib_dir != DEFAULT_DIR and not (args.calib_dir or args.calib_data) and args.precision in (None, "int8"):
            print(f"calibration: {options.calib_dir}/ ({fallback_note(DEFAULT_DIR)})")
    else:
        make_source, inputs = source.spec_from_checkpoint(args.checkpoint, args.name)
        recorded_data(args, options.calib_dir)  # the checkpoint's own dataset and split, where no flag names other data
        options = dataclasses.replace(options, calib_data=args.calib_data, val_fraction=args.val_fraction,
                                      split_seed=args.split_seed or 0)  # fmt: skip
    check_outputs(args, backend, inputs["name"])
    built = pipeline.build(make_source, inputs, options, backend)
    if built.skipped:
        print(f"up to date, skipped: {built.paths.sidecar} (--force rebuilds)")
        print(built.table)
    else:
        written = ", ".join(str(p) for p in built.paths.all())
        print(f"wrote {written} and {built.paths.sidecar.name} in {time.perf_counter() - started:.1f} s")
    print(f"next:  fcn-edge stream --model {built.paths.artifact} --camera 0   (or --video FILE, --images DIR)")
    return 0


def recorded_data(args: argparse.Namespace, default_dir: Path) -> None:
    """Calibrate on the train split of the dataset the checkpoint records, unless a flag names other frames; say which
    (``default_dir``: calibration/ here, or the project's)."""
    record = source.checkpoint_record(args.checkpoint)
    shown = f"{default_dir}/ (" + ("" if default_dir == DEFAULT_DIR else f"{fallback_note(DEFAULT_DIR)}; ")
    if args.val_fraction is None and record.get("val_fraction") is not None:
        args.val_fraction, args.split_seed = record["val_fraction"], record.get("split_seed") or 0
    own = bool(record.get("root")) and record.get("dataset") not in (None, "synthetic")
    if own and not args.calib_data and not args.calib_dir and Path(record["root"]).is_dir():
        args.calib_data = f"{record['dataset']}:{record['root']}"
        line = f"train split of {describe(record)} (the dataset the checkpoint records; --calib-dir or --calib-data override)"
    elif args.calib_data or args.calib_dir:
        line = f"{args.calib_data or args.calib_dir} ({'--calib-data' if args.calib_data else '--calib-dir'})"
    elif own:
        line = (f"{shown}the checkpoint's dataset {describe(record)} is not here: "
                f"pass --calib-data {record['dataset']}:ROOT to calibrate on it)")  # fmt: skip
    else:
        line = f"{shown}the checkpoint records no dataset of its own; --calib-dir or --calib-data override)"
    if args.precision in (None, "int8"):
        print(f"calibration: {line}")


if __name__ == "__main__":
    raise SystemExit(main())
