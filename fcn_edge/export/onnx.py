"""Export a model to one self-contained, verified .onnx file a runtime can feed camera frames.

The graph is the whole deployed function: uint8 NHWC BGR frames in (or normalised float
NCHW), :func:`fcn_edge.models.preprocess.frames_to_tensor`, the FCN with its pad-to-stride and crop, and
ArgMax cast to uint8 labels, so one byte per pixel leaves the accelerator. uint8 appears only at
the graph boundary (the frame's first op is a Cast to float; the labels' last op is the Cast to
uint8), as TensorRT's ONNX parser requires: fcn_edge.backends.tensorrt.compat checks it. Batch, height
and width are dynamic. Then the graph passes (:mod:`.passes`), onnxslim, the ONNX checker
and shape inference, verification against PyTorch (:mod:`.verify`), and the metadata
(:mod:`.metadata`). The file is written atomically and only once verification passed.

Exporter: the TorchScript tracer, ``torch.onnx.export(..., dynamo=False)``, on purpose.
On this 2-core machine it exports the default model in about 1 s where the torch.export
based exporter (the default since torch 2.9) takes 10-25 s, which matters for a compile
step run per checkpoint and for a test suite that exports a dozen graphs; it writes opset
17 natively (dynamo converts down from 18) and one file with no external data. Its known
weakness, freezing Python-side values such as ``int(x.shape[-1])`` into the trace, is what
verification at sizes unlike the traced one catches (a test proves it does). It is
deprecated: torch is pinned below 2.15 in pyproject, and moving to ``dynamo=True`` means
``dynamic_shapes`` with ``torch.export.Dim.DYNAMIC`` and a traced batch of at least 2
(already the case here); the rest of this module does not change.

Every graph is exported with both outputs (logits, labels) and verified with both, so a
labels-only export still reports its logit difference; the unrequested output is then
pruned and the pruned graph verified again before it is written.
"""

from __future__ import annotations

import dataclasses
import io
import time
import warnings
from pathlib import Path
from typing import Sequence

import onnx
import onnx_ir as ir
import onnx_ir.passes.common  # noqa: F401  (registers ir.passes.common)
import onnxslim
import torch
from torch import nn

from ..atomic import atomic_path
from ..checkpoint import load_checkpoint
from ..errors import FcnEdgeError
from ..models.edges import EdgeOptions
from ..models.preprocess import frames_to_tensor
from ..spec import Preprocess
from ..metadata import INPUT_FORMATS, ModelMetadata, write_metadata
from .lean import LeanReport, make_lean
from .passes import PassReport, replace_bilinear_deconvs
from .report import ExportReport
from .verify import DEFAULT_VERIFY_SIZES, Tolerance, check_against_torch, torch_outputs, verification_inputs

MIN_OPSET = 17
DEFAULT_OPSET = 18
OUTPUT_NAMES = ("logits", "labels")  # graph order
INPUT_NAMES = {"frame": "frame", "tensor": "input"}
EXAMPLE_SIZE = (2, 50, 70)  # (batch, height, width) traced: unlike every verification size, not a multiple of 32
EXPORTER = f"torch.onnx TorchScript tracer (dynamo=False), torch {torch.__version__}"


class DeployedModel(nn.Module):
    """What the runtime runs: preprocessing (for frames), the network, and argmax to uint8 labels."""

    def __init__(self, model: nn.Module, preprocess: Preprocess, input_format: str) -> None:
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self.input_format = input_format

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.input_format == "frame":
            x = frames_to_tensor(self.preprocess, x)
        height, width = x.shape[-2:]
        # FCN crops its own logits in forward(); any other segmentation module is taken as is
        padded = self.model.forward_padded(x) if hasattr(self.model, "forward_padded") else self.model(x)
        # crop after ArgMax (fewer bytes than the logits); the indices pass through float, the one type
        # TensorRT casts both from its INT32 ArgMax and to the UINT8 output, and UINT8 only at the output
        labels = padded.argmax(1).to(torch.float32)[:, :height, :width].to(torch.uint8)
        return padded[:, :, :height, :width], labels


def max_opset() -> int:
    """The newest opset both the installed TorchScript exporter and onnx write natively.

    Above its own maximum the exporter only warns and stamps the newer opset on older
    symbolics, so its limit (a private constant; torch has no public one) is the real one.
    """
    return min(torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET, onnx.defs.onnx_opset_version())


def export_checkpoint(
    checkpoint_path: str | Path,
    output_path: str | Path,
    input_format: str = "frame",
    outputs: Sequence[str] = ("labels",),
    opset: int = DEFAULT_OPSET,
    verify_sizes: Sequence[tuple[int, int, int]] = DEFAULT_VERIFY_SIZES,
    graph_passes: bool = True,
    tolerance: Tolerance = Tolerance(),
    edges: EdgeOptions = EdgeOptions(),
) -> ExportReport:
    """Export a checkpoint file; its classes, palette, preprocessing and hash become the metadata.

    ``edges`` (multi-scale, guided refinement) become part of the graph and of ``model_config["edges"]``.
    """
    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.build()
    meta = ModelMetadata(
        classes=checkpoint.classes,
        palette=checkpoint.palette,
        preprocess=checkpoint.preprocess,
        input_format=input_format,
        outputs=list(outputs),
        output_stride=model.output_stride,
        source_sha256=checkpoint.sha256(),
        model_config={**checkpoint.config.to_dict(), **({} if edges.plain else {"edges": edges.to_dict()})},
    )
    return export_model(edges.wrap(model), meta, output_path, opset, verify_sizes, graph_passes, tolerance, str(checkpoint_path))


def export_model(
    model: nn.Module,
    meta: ModelMetadata,
    output_path: str | Path,
    opset: int = DEFAULT_OPSET,
    verify_sizes: Sequence[tuple[int, int, int]] = DEFAULT_VERIFY_SIZES,
    graph_passes: bool = True,
    tolerance: Tolerance = Tolerance(),
    source: str = "model",
) -> ExportReport:
    """Export ``model`` (NCHW float -> logits) as ``meta`` describes it: input format, outputs, preprocessing.

    The graph is built from ``meta``, so the metadata written is what the graph does. Puts
    ``model`` in eval mode. Raises FcnEdgeError, writing nothing, when the export does not verify.
    """
    meta = _checked(meta, opset)
    if not verify_sizes:
        raise FcnEdgeError("no verification sizes given: an export is only written once it is verified")
    started = time.perf_counter()
    with atomic_path(output_path) as tmp:
        deployed = DeployedModel(model, meta.preprocess, meta.input_format).eval()
        exported = _trace(deployed, meta.input_format, opset)
        pass_report = None
        if graph_passes:
            exported, pass_report = replace_bilinear_deconvs(exported)
        full = _tidy(exported)
        lean = LeanReport() if graph_passes else None
        if lean:
            full = make_lean(full, lean)
        final = _select_outputs(full, meta.outputs) if tuple(meta.outputs) != OUTPUT_NAMES else full
        if lean and final is not full:  # without the logits output, the label Resize has ArgMax as its only reader
            final = make_lean(final, lean)
        cases = verification_inputs(verify_sizes, meta.preprocess, meta.input_format)
        references = torch_outputs(deployed, cases)
        checks = check_against_torch(full, cases, references)
        if final is not full:
            checks = [a.worst(b) for a, b in zip(checks, check_against_torch(final, cases, references))]
        failed = [c for c in checks if not c.passes(tolerance)]
        if failed:
            raise FcnEdgeError(
                f"the ONNX export of {source} does not compute what PyTorch does "
                f"({'; '.join(c.describe() for c in failed)}; limits |logit diff| <= {tolerance.max_abs_diff:g}, "
                f"agreement >= {100 * tolerance.min_agreement:g}%): nothing written to {output_path}; look for Python-side values "
                "(int() of a shape, random draws, branches) that tracing freezes and make them tensor ops"
            )
        write_metadata(final, meta)
        onnx.save_model(final, tmp)
    deconvs = sum(n.op_type == "ConvTranspose" for n in final.graph.node)
    return ExportReport(
        output_path=Path(output_path),
        source=source,
        opset=opset,
        exporter=EXPORTER,
        inputs=[_describe(v) for v in final.graph.input],
        outputs=[_describe(v) for v in final.graph.output],
        nodes_before_slim=len(exported.graph.node),
        nodes_after_slim=len(final.graph.node),
        convtranspose_remaining=deconvs,
        reasons=_reasons(pass_report, deconvs),
        graph_pass=pass_report,
        lean=lean,
        checks=checks,
        tolerance=tolerance,
        seconds=time.perf_counter() - started,
    )


def _checked(meta: ModelMetadata, opset: int) -> ModelMetadata:
    """Reject what cannot be exported before spending time on it; put the outputs in graph order."""
    if not MIN_OPSET <= opset <= max_opset():
        raise FcnEdgeError(f"opset {opset} is not supported: choose {MIN_OPSET}..{max_opset()} (--opset)")
    if meta.input_format not in INPUT_FORMATS:
        raise FcnEdgeError(f"input format {meta.input_format!r} is not supported: choose {' or '.join(INPUT_FORMATS)}")
    unknown = [o for o in meta.outputs if o not in OUTPUT_NAMES]
    if unknown or not meta.outputs:
        raise FcnEdgeError(f"outputs {list(meta.outputs)} are not supported: choose labels, logits or both")
    if "labels" in meta.outputs and len(meta.classes) > 256:
        raise FcnEdgeError(f"{len(meta.classes)} classes do not fit the uint8 labels output: export logits only")
    return dataclasses.replace(meta, outputs=[o for o in OUTPUT_NAMES if o in meta.outputs])


def _trace(deployed: DeployedModel, input_format: str, opset: int) -> onnx.ModelProto:
    batch, height, width = EXAMPLE_SIZE
    if input_format == "frame":
        example = torch.zeros((batch, height, width, 3), dtype=torch.uint8)
        input_axes = {0: "N", 1: "H", 2: "W"}
    else:
        example = torch.zeros((batch, 3, height, width))
        input_axes = {0: "N", 2: "H", 3: "W"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # TracerWarnings flag values frozen into the trace; verification at other sizes is the real check.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the exporter's own notice; see the module docstring
        torch.onnx.export(
            deployed,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAMES[input_format]],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                INPUT_NAMES[input_format]: input_axes,
                "logits": {0: "N", 2: "H", 3: "W"},
                "labels": {0: "N", 1: "H", 2: "W"},
            },
        )
    return onnx.load_from_string(buffer.getvalue())


def _select_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """Drop the graph outputs not in ``names`` and the nodes only they needed."""
    ir_model = ir.from_proto(model)
    kept = [v for v in ir_model.graph.outputs if v.name in names]
    ir_model.graph.outputs.clear()
    ir_model.graph.outputs.extend(kept)
    ir.passes.common.RemoveUnusedNodesPass()(ir_model)
    pruned = ir.to_proto(ir_model)
    onnx.checker.check_model(pruned, full_check=True)
    return pruned


def _tidy(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim (constant folding, dead code, fusions), then the checker and strict shape inference."""
    slimmed = onnxslim.slim(model)
    onnx.checker.check_model(slimmed, full_check=True)
    return onnx.shape_inference.infer_shapes(slimmed, check_type=True, strict_mode=True, data_prop=True)


def _describe(value: onnx.ValueInfoProto) -> str:
    tensor = value.type.tensor_type
    dims = [d.dim_param or str(d.dim_value) for d in tensor.shape.dim]
    return f"{value.name} {onnx.TensorProto.DataType.Name(tensor.elem_type).lower()} [{', '.join(dims)}]"


def _reasons(pass_report: PassReport | None, remaining: int) -> list[str]:
    if not remaining:
        return []
    if pass_report is None:
        return ["graph passes were skipped (graph_passes=False, --no-graph-passes)"]
    return [f"{name}: {reason}" for name, reason in pass_report.kept]
