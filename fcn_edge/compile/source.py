"""The FP32 model a build starts from, and how to feed it camera frames.

Our exports carry classes, preprocessing and input format in their metadata; any other
ONNX segmentation model gets them from flags (``--input-format``, ``--mean``, ``--std``,
``--classes``/``--num-classes``, and ``--threshold``/``--output-activation`` for a one-channel
binary model) and is given frame input and labels output in the build's temporary folder
(:mod:`.foreign`), so that its artifact streams like ours. Either way the build knows one
thing: how a uint8 BGR frame becomes this model's input, the same way the runtime will do it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import onnx

from ..errors import FcnEdgeError, require_torch
from ..metadata import check_classes
from ..paths import DEFAULT_CHECKPOINT, file_sha256
from ..sidecar import artifact_name, check_name

if TYPE_CHECKING:  # load_onnx must stay fast for the up-to-date check
    from ..metadata import ModelMetadata
    from ..spec import Preprocess


@dataclass
class SourceModel:
    path: Path  # the FP32 ONNX file
    name: str  # artifact base name: engines/<name>.<precision>.<ext>
    input_name: str
    input_format: str  # "frame" (uint8 NHWC BGR) or "tensor" (float32 NCHW, normalised)
    preprocess: Preprocess
    classes: list[str]
    palette: list[tuple[int, int, int]]
    outputs: list[str]
    metadata: ModelMetadata | None = None  # ours; None for a foreign model
    origin: dict = field(default_factory=dict)  # what it was made from (checkpoint path and hash, or the ONNX)
    fixed_size: tuple[int, int] | None = None  # (H, W) when the model takes only one input size
    foreign: dict | None = None  # a foreign model: what it takes and gives, and how its labels are made (.foreign)

    def feed(self, frames: Sequence[np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """uint8 BGR frames (one size) -> this model's input dict."""
        batch = np.stack(list(frames)) if not isinstance(frames, np.ndarray) else frames
        batch = batch[None] if batch.ndim == 3 else batch
        if self.input_format == "frame":
            return {self.input_name: np.ascontiguousarray(batch)}
        return {self.input_name: self.preprocess.frames_to_array(np.ascontiguousarray(batch))}

    def describe(self) -> dict:
        return {
            "classes": self.classes,
            "palette": [list(c) for c in self.palette],
            "preprocess": self.preprocess.to_dict(),
            "input_format": self.input_format,
            **({"foreign": self.foreign} if self.foreign else {}),
            **self.origin,
        }


MakeSource = Callable[[Path], SourceModel]  # called with the build's temporary folder
BINARY_CLASSES = ("background", "foreground")  # --num-classes 1


def spec_from_onnx(
    path: Path,
    name: str | None = None,
    input_format: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channel_order: str | None = None,
    classes: list[str] | None = None,
    num_classes: int | None = None,
    output_activation: str | None = None,
    threshold: float | None = None,
) -> tuple[MakeSource, dict]:
    """(make_source, identifying inputs) for an ONNX model and the flags that describe a foreign one.

    The model is opened now, so a file that is not ONNX fails in a second; the inputs (its
    hash and the flags) are all the up-to-date check needs. ``--num-classes 1`` is a binary
    model: background and foreground.
    """
    if num_classes is not None and num_classes < 1:
        raise FcnEdgeError(f"--num-classes {num_classes} must be at least 1 (1: a binary model, background and foreground)")
    if classes is not None:
        check_classes(classes, "--classes")
    if num_classes == 1:
        classes = list(BINARY_CLASSES)
    classes = classes or ([f"class_{i}" for i in range(num_classes)] if num_classes else None)
    model = load_onnx(path)
    name = name or path.name.removesuffix(".onnx")
    check_name(name)
    flags = {"input_format": input_format, "mean": mean, "std": std, "channel_order": channel_order, "classes": classes,
             "output_activation": output_activation, "threshold": threshold}  # fmt: skip

    def describe(tmp: Path) -> SourceModel:
        from ..spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess

        preprocess = None
        if mean or std or channel_order:
            preprocess = Preprocess(tuple(mean or IMAGENET_MEAN), tuple(std or IMAGENET_STD), channel_order or "RGB")
        return from_onnx(path, input_format, preprocess, classes, name, tmp=tmp, output_activation=output_activation,
                         threshold=threshold)  # fmt: skip

    inputs = {"name": name, "onnx_sha256": file_sha256(path), "flags": json.dumps(flags)}
    data = external_data_files(path, model)
    if data:  # the weights live there: a model whose .data changed is not up to date
        inputs["external_data_sha256"] = json.dumps({p.name: file_sha256(p) for p in data})
    return describe, inputs


def checkpoint_record(checkpoint: Path) -> dict:
    """The dataset record a checkpoint keeps (fcn_edge.data.record); {} when it has none or is not a file."""
    if not checkpoint.is_file():
        return {}  # spec_from_checkpoint says what is wrong with the path
    require_torch("building from a checkpoint (it is exported first)", "; or pass an exported model with --onnx")
    from ..checkpoint import load_checkpoint

    return dict(load_checkpoint(checkpoint).training.get("data") or {})


def spec_from_checkpoint(checkpoint: Path, name: str | None = None) -> tuple[MakeSource, dict]:
    """(make_source, identifying inputs) for an fcn_edge checkpoint, exported in the build's temporary folder.

    Nothing heavy is imported until the source is made: the up-to-date check needs only the hash.
    """
    if checkpoint.is_dir():
        raise FcnEdgeError(f"checkpoint {checkpoint} is a folder: pass the .pt file inside it (--checkpoint)")
    if not checkpoint.is_file():
        wheel = " (a wheel install ships none: clone the project, pip install -e . there)"
        shipped = wheel if checkpoint == DEFAULT_CHECKPOINT else ""
        raise FcnEdgeError(
            f"checkpoint {checkpoint} does not exist{shipped}: train one with fcn-edge train, or pass --checkpoint or --onnx"
        )
    name = name or artifact_name(checkpoint)
    check_name(name)  # it also names a file in the build's temporary folder

    def export(tmp: Path) -> SourceModel:
        require_torch("building from a checkpoint (it is exported first)", "; or pass an exported model with --onnx")
        from ..checkpoint import load_checkpoint
        from ..export.onnx import export_checkpoint

        path = tmp / f"{name}.onnx"
        export_checkpoint(checkpoint, path)
        trained_on = load_checkpoint(checkpoint).training.get("data") or None  # the dataset a build verifies on by default
        origin = {"checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint), "trained_on": trained_on}
        return from_onnx(path, name=name, origin=origin)

    return export, {"name": name, "checkpoint_sha256": file_sha256(checkpoint)}


def load_onnx(path: Path) -> onnx.ModelProto:
    """The model at ``path`` (its graph; external weights stay on disk) or a one-line error saying what is wrong."""
    if path.is_dir():
        raise FcnEdgeError(f"ONNX model {path} is a folder: pass the .onnx file inside it with --onnx")
    if not path.is_file():
        raise FcnEdgeError(f"ONNX model {path} does not exist: pass an exported .onnx with --onnx or use --checkpoint")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf raises DecodeError, RuntimeWarning and others for non-ONNX bytes
        raise FcnEdgeError(f"{path} is not an ONNX model ({type(error).__name__}): pass a .onnx file") from None
    if not model.graph.node or not model.graph.input:
        raise FcnEdgeError(f"{path} is not an ONNX model (it has no graph): pass a .onnx file")
    if not model.ir_version or not model.opset_import or not model.graph.output:
        raise FcnEdgeError(f"{path} is incomplete (no IR version, opset or outputs; a truncated copy?): copy or export it again")
    external_data_files(path, model)
    return model


def external_data_files(path: Path, model: onnx.ModelProto) -> list[Path]:
    """The files beside ``path`` that hold its external tensors (sorted); a one-line error if one is missing."""
    locations = {
        entry.value
        for tensor in _tensors(model.graph)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    for location in sorted(locations):
        file = path.parent / location
        if os.path.isabs(location) or os.path.normpath(location).split(os.sep)[0] == "..":  # as ONNX's checker reads it
            raise FcnEdgeError(
                f"{path} keeps weights at {location!r}, outside its folder: refused (ONNX Runtime reads external data "
                "only from the model's folder); move the data file beside the .onnx file and save the model again"
            )  # checked before any file named is read or hashed
        if not file.is_file():
            raise FcnEdgeError(f"{path} keeps its weights in {file}, which is missing: copy it beside the .onnx file")
    return sorted(path.parent / location for location in locations)


def _tensors(graph: onnx.GraphProto):
    """Every tensor of ``graph``: initializers and constant attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def from_onnx(
    path: Path,
    input_format: str | None = None,
    preprocess: Preprocess | None = None,
    classes: list[str] | None = None,
    name: str | None = None,
    origin: dict | None = None,
    tmp: Path | None = None,
    output_activation: str | None = None,
    threshold: float | None = None,
) -> SourceModel:
    """Describe ``path``: from its fcn_edge metadata, else from the flags' values (which also override).

    A foreign model (no metadata) is wrapped to take frames and give labels (:mod:`.foreign`),
    written in ``tmp``: the SourceModel is that graph, and ``foreign`` says what was added.
    """
    from ..data.palette import default_palette
    from ..metadata import INPUT_FORMATS, read_metadata
    from ..spec import Preprocess
    from . import foreign

    model = load_onnx(path)
    props = {p.key for p in model.metadata_props}
    meta = read_metadata(model) if any(k.startswith("fcn_edge.") for k in props) else None
    inputs = [v for v in model.graph.input if v.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise FcnEdgeError(
            f"{path} has {len(inputs)} inputs ({', '.join(v.name for v in inputs)}): a segmentation model needs one image input"
        )
    if meta is None and (input_format is None or classes is None):
        raise FcnEdgeError(
            f"{path} has no fcn_edge metadata: pass --input-format {'|'.join(foreign.FORMATS)} and --num-classes N "
            "(or --classes a,b,...; 1 for a binary model), and --mean/--std for a tensor input"
        )
    if meta is not None and (output_activation or threshold is not None):
        raise FcnEdgeError(f"{path} is an fcn_edge export, which gives its own labels: drop --output-activation and --threshold")
    input_format = input_format or meta.input_format
    formats = INPUT_FORMATS if meta is not None else foreign.FORMATS
    if input_format not in formats:
        raise FcnEdgeError(f"--input-format {input_format!r} is not supported: choose {' or '.join(formats)}")
    fixed_size = _check_input(path, inputs[0], input_format)
    classes = classes or meta.classes
    channels = _check_outputs(path, model, len(classes), foreign.channel_axis(foreign.scores_output(model), input_format))
    binary = None
    if meta is None and channels == 1:
        binary = foreign.binary(model, path, output_activation, threshold)
    elif output_activation or threshold is not None:
        raise FcnEdgeError(
            f"{path} scores {channels or 'several'} classes: --output-activation and --threshold are for a one-channel "
            "(binary) output, drop them"
        )
    preprocess = preprocess or (meta.preprocess if meta else Preprocess())
    source = SourceModel(
        path=path,
        name=name or path.name.removesuffix(".onnx"),
        input_name=inputs[0].name,
        input_format=input_format,
        preprocess=preprocess,
        classes=list(classes),
        palette=list(meta.palette) if meta and len(meta.palette) == len(classes) else default_palette(len(classes)),
        outputs=[o.name for o in model.graph.output],
        metadata=meta,
        origin=origin or {"onnx": str(path)},
        fixed_size=fixed_size,
    )
    return source if meta is not None else _wrapped(source, model, binary, tmp)


def _wrapped(source: SourceModel, model: onnx.ModelProto, binary, tmp: Path | None) -> SourceModel:
    """``source``, a foreign model, as the frame-to-labels graph the artifact will be (written in ``tmp``)."""
    from . import foreign

    if tmp is None:
        raise ValueError("a foreign model is wrapped in the build's temporary folder: pass tmp")
    data = external_data_files(source.path, model)
    full = onnx.load(str(source.path))  # with its weights, wherever they live
    wrapped = foreign.frame_model(full, source.input_format, source.preprocess, binary, source.fixed_size)
    target = tmp / f"{source.name}.frames.onnx"
    onnx.save_model(wrapped, target, save_as_external_data=bool(data), location=f"{target.name}.data")
    scores = foreign.scores_output(model)
    described = {
        "input_format": source.input_format,
        "input": _describe(next(v for v in model.graph.input if v.name == source.input_name)),
        "output": _describe(scores),
        "labels": {"threshold": binary.describe()}
        if binary
        else "argmax"
        if len(scores.type.tensor_type.shape.dim) != 3
        else "as given",
    }
    if source.input_format != "frame":
        described["preprocess"] = source.preprocess.to_dict()
    return dataclasses.replace(source, path=target, input_name=foreign.INPUT, input_format="frame", outputs=[foreign.LABELS],
                               foreign=described)  # fmt: skip


def _check_input(path: Path, value: onnx.ValueInfoProto, input_format: str) -> tuple[int, int] | None:
    """The input's fixed (H, W), None when its size is dynamic; an error for a layout the build cannot feed."""
    tensor = value.type.tensor_type
    dims = [d.dim_value or None for d in tensor.shape.dim]
    layouts = {  # format: (type, channel axis, its description)
        "frame": (onnx.TensorProto.UINT8, 3, "uint8 [N,H,W,3] BGR frames"),
        "tensor": (onnx.TensorProto.FLOAT, 1, "float32 [N,3,H,W] normalised images"),
        "tensor-nhwc": (onnx.TensorProto.FLOAT, 3, "float32 [N,H,W,3] normalised images"),
    }
    elem_type, channel_axis, layout = layouts[input_format]
    channels_at = dims[channel_axis] if len(dims) == 4 else None
    floats = {"tensor": 1, "tensor-nhwc": 3} if tensor.elem_type == onnx.TensorProto.FLOAT and len(dims) == 4 else {}
    other = next((f for f, axis in floats.items() if dims[axis] == 3 and dims[4 - axis] != 3), None)  # 3 channels only there
    if tensor.elem_type != elem_type or len(dims) != 4 or channels_at not in (3, None) or other not in (None, input_format):
        hint = f"--input-format {other}" if other and other != input_format else "the right --input-format"
        raise FcnEdgeError(f"{path} input {_describe(value)} is not {layout}: pass {hint}")
    batch, height, width = (dims[0], dims[2], dims[3]) if channel_axis == 1 else (dims[0], dims[1], dims[2])
    if bool(height) != bool(width):
        raise FcnEdgeError(
            f"{path} input {_describe(value)} fixes only its {'height' if height else 'width'}: export it with both "
            "height and width fixed, or both dynamic"
        )
    if batch not in (None, 1):
        raise FcnEdgeError(
            f"{path} input {_describe(value)} has a fixed batch of {batch}: export it with batch 1 or a dynamic batch"
        )
    return (height, width) if height else None


def _check_outputs(path: Path, model: onnx.ModelProto, classes: int, axis: int = 1) -> int | None:
    """A segmentation model gives [N,K,H,W] scores ([N,H,W,K]: ``axis`` 3) or [N,H,W] labels; K is the number of
    classes, or 1 for two (a binary model: background and foreground). Returns the labels' output K where the graph
    declares it.

    Checked where the graph declares ranks and sizes; the verification checks the rest on real outputs.
    """
    from .foreign import channels, scores_output

    ranked = [o for o in model.graph.output if o.type.tensor_type.HasField("shape")]
    dims = {o.name: [d.dim_value or None for d in o.type.tensor_type.shape.dim] for o in ranked}
    if len(ranked) == len(model.graph.output) and not any(len(d) in (3, 4) for d in dims.values()):
        raise FcnEdgeError(
            f"{path} outputs {', '.join(_describe(o) for o in ranked)}: not a segmentation model, which gives "
            "[N,K,H,W] logits or [N,H,W] labels (a classifier or detector cannot be built here)"
        )
    for output in ranked:
        found = dims[output.name][axis] if len(dims[output.name]) == 4 else None
        if found and found != classes and not (found == 1 and classes == 2):
            raise FcnEdgeError(
                f"{path} output {_describe(output)} scores {found} classes, but {classes} were given "
                f"(--num-classes, --classes or its metadata): give {found}"
                if found > 1
                else f"{path} output {_describe(output)} gives one channel (a binary model), but {classes} "
                "classes were given (--num-classes, --classes): pass --num-classes 1 (background, foreground)"
            )
    if classes == 1:
        raise FcnEdgeError("--classes names one class; a model has two or more: for a binary model pass --num-classes 1 "
                           "or two names, background first (--classes background,person)")  # fmt: skip
    found = channels(scores_output(model), axis)
    if found is None:  # not declared on the output: shape inference may know it
        try:
            found = channels(scores_output(onnx.shape_inference.infer_shapes(model)), axis)
        except Exception:  # noqa: BLE001 - an op onnx cannot infer: the verification checks the real outputs
            found = None
        if found and found != classes and not (found == 1 and classes == 2):
            raise FcnEdgeError(
                f"{path} scores {found} classes, but {classes} were given (--num-classes, --classes): give {found}"
            )
    return found


def _describe(value: onnx.ValueInfoProto) -> str:
    """'x float [1, 3, 224, 224]' (symbolic sizes by name)."""
    tensor = value.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
    return f"{value.name!r} {onnx.TensorProto.DataType.Name(tensor.elem_type).lower()} {dims}"
