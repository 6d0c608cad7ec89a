"""Export a checkpoint to one verified .onnx file: camera frames in, uint8 labels out by default."""

from __future__ import annotations

import argparse

from fcn_edge.cli import HelpFormatter, nonempty_path
from fcn_edge.atomic import check_distinct, check_output
from fcn_edge.errors import run_cli
from fcn_edge.export import DEFAULT_OPSET, export_checkpoint
from fcn_edge.models.edges import EdgeOptions, guided_arg, scales_arg
from fcn_edge.models.refine import GuidedParams
from fcn_edge.paths import DEFAULT_CHECKPOINT, ENGINES_DIR

OUTPUT_KINDS = {"labels": ("labels",), "logits": ("logits",), "both": ("logits", "labels")}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fcn-edge export", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", type=nonempty_path, default=DEFAULT_CHECKPOINT)
    p.add_argument(
        "--output",
        type=nonempty_path,
        help="default: engines/<checkpoint stem>.onnx, with .refine, .scales and .flip "
        "before .onnx for those options (never replacing the plain export)",
    )
    p.add_argument(
        "--input",
        default="frame",
        choices=["frame", "tensor"],
        help="frame: uint8 NHWC BGR as OpenCV gives it, preprocessed in the graph; tensor: float32 NCHW normalised",
    )
    p.add_argument(
        "--output-kind",
        default="labels",
        choices=list(OUTPUT_KINDS),
        help="labels: uint8 N x H x W class ids; logits: float32 N x K x H x W",
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--no-graph-passes", action="store_true", help="keep fixed bilinear ConvTranspose nodes as they are")
    p.add_argument(
        "--refine",
        nargs="?",
        const=GuidedParams(),
        type=guided_arg,
        metavar="RADIUS,EPS[,SUBSAMPLE]",
        help="guided-filter edge refinement in the graph; bare --refine takes the parameters chosen on the "
        "synthetic validation split (fcn-edge evaluate --refine search chooses them for other data)",
    )
    p.add_argument("--scales", type=scales_arg, default=(1.0,), help="multi-scale inference in the graph, e.g. 0.75,1,1.25")
    p.add_argument("--flip", action="store_true", help="also average the mirrored frame at every scale")
    return p.parse_args(argv)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = args.output
    if output is None:
        if not ENGINES_DIR.exists():
            ENGINES_DIR.mkdir()
        output = ENGINES_DIR / f"{args.checkpoint.stem}{edge_suffix(args)}.onnx"
    check_distinct({"--checkpoint": args.checkpoint}, {"--output": output})
    check_output(output, "--output")  # before the export, which takes seconds
    report = export_checkpoint(
        args.checkpoint,
        output,
        input_format=args.input,
        outputs=OUTPUT_KINDS[args.output_kind],
        opset=args.opset,
        graph_passes=not args.no_graph_passes,
        edges=EdgeOptions(tuple(args.scales), args.flip, args.refine),
    )
    print(report.table())
    return 0


def edge_suffix(args: argparse.Namespace) -> str:
    """'.refine.scales' for a graph exported with --refine and --scales: its own default file name."""
    used = [("refine", args.refine is not None), ("scales", tuple(args.scales) != (1.0,)), ("flip", args.flip)]
    return "".join(f".{name}" for name, on in used if on)


if __name__ == "__main__":
    raise SystemExit(main())
