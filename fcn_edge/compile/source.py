"""The FP32 model a build starts from, and how to feed it camera frames.

Our exports carry classes, preprocessing and input format in their metadata; any other
ONNX segmentation model gets them from flags (``--input-format``, ``--mean``, ``--std``,
``--classes``/``--num-classes``). Either way the build knows one thing: how a uint8 BGR
frame becomes this model's input, the same way the runtime will do it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import onnx

from ..errors import FcnEdgeError, require_torch
from ..paths import file_sha256

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
            **self.origin,
        }


MakeSource = Callable[[Path], SourceModel]  # called with the build's temporary folder


def spec_from_onnx(
    path: Path,
    name: str | None = None,
    input_format: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channel_order: str | None = None,
    classes: list[str] | None = None,
    num_classes: int | None = None,
) -> tuple[MakeSource, dict]:
    """(make_source, identifying inputs) for an ONNX model and the flags that describe a foreign one.

    The model is opened now, so a file that is not ONNX fails in a second; the inputs (its
    hash and the flags) are all the up-to-date check needs.
    """
    if num_classes is not None and num_classes < 2:
        raise FcnEdgeError(f"--num-classes {num_classes} must be at least 2")
    classes = classes or ([f"class_{i}" for i in range(num_classes)] if num_classes else None)
    load_onnx(path)
    name = name or path.name.removesuffix(".onnx")
    flags = {"input_format": input_format, "mean": mean, "std": std, "channel_order": channel_order, "classes": classes}

    def describe(tmp: Path) -> SourceModel:
        from ..spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess

        preprocess = None
        if mean or std or channel_order:
            preprocess = Preprocess(tuple(mean or IMAGENET_MEAN), tuple(std or IMAGENET_STD), channel_order or "RGB")
        return from_onnx(path, input_format, preprocess, classes, name)

    return describe, {"name": name, "onnx_sha256": file_sha256(path), "flags": json.dumps(flags)}


def spec_from_checkpoint(checkpoint: Path, name: str | None = None) -> tuple[MakeSource, dict]:
    """(make_source, identifying inputs) for an fcn_edge checkpoint, exported in the build's temporary folder.

    Nothing heavy is imported until the source is made: the up-to-date check needs only the hash.
    """
    if not checkpoint.is_file():
        raise FcnEdgeError(f"checkpoint {checkpoint} does not exist: train one with scripts/train.py, or pass --checkpoint or --onnx")
    name = name or checkpoint.stem

    def export(tmp: Path) -> SourceModel:
        require_torch("building from a checkpoint (it is exported first)", "; or pass an exported model with --onnx")
        from ..export.onnx import export_checkpoint

        path = tmp / f"{name}.onnx"
        export_checkpoint(checkpoint, path)
        return from_onnx(path, name=name, origin={"checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint)})

    return export, {"name": name, "checkpoint_sha256": file_sha256(checkpoint)}


def load_onnx(path: Path) -> onnx.ModelProto:
    """The model at ``path`` or a one-line error saying what is wrong with the file."""
    if not path.is_file():
        raise FcnEdgeError(f"ONNX model {path} does not exist: pass an exported .onnx with --onnx or use --checkpoint")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf raises DecodeError, RuntimeWarning and others for non-ONNX bytes
        raise FcnEdgeError(f"{path} is not an ONNX model ({type(error).__name__}): pass a .onnx file") from None
    if not model.graph.node or not model.graph.input:
        raise FcnEdgeError(f"{path} is not an ONNX model (it has no graph): pass a .onnx file")
    return model


def from_onnx(
    path: Path,
    input_format: str | None = None,
    preprocess: Preprocess | None = None,
    classes: list[str] | None = None,
    name: str | None = None,
    origin: dict | None = None,
) -> SourceModel:
    """Describe ``path``: from its fcn_edge metadata, else from the flags' values (which also override)."""
    from ..data.palette import default_palette
    from ..metadata import INPUT_FORMATS, read_metadata
    from ..spec import Preprocess

    model = load_onnx(path)
    props = {p.key for p in model.metadata_props}
    meta = read_metadata(model) if any(k.startswith("fcn_edge.") for k in props) else None
    inputs = [v for v in model.graph.input if v.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise FcnEdgeError(f"{path} has {len(inputs)} inputs ({', '.join(v.name for v in inputs)}): a segmentation model needs one image input")
    if meta is None and (input_format is None or classes is None):
        raise FcnEdgeError(
            f"{path} has no fcn_edge metadata: pass --input-format frame|tensor and --num-classes N (or --classes a,b,...), "
            "and --mean/--std for a tensor input"
        )
    input_format = input_format or meta.input_format
    if input_format not in INPUT_FORMATS:
        raise FcnEdgeError(f"--input-format {input_format!r} is not supported: choose {' or '.join(INPUT_FORMATS)}")
    _check_input(path, inputs[0], input_format)
    classes = classes or meta.classes
    return SourceModel(
        path=path,
        name=name or path.name.removesuffix(".onnx"),
        input_name=inputs[0].name,
        input_format=input_format,
        preprocess=preprocess or (meta.preprocess if meta else Preprocess()),
        classes=list(classes),
        palette=list(meta.palette) if meta and len(meta.palette) == len(classes) else default_palette(len(classes)),
        outputs=[o.name for o in model.graph.output],
        metadata=meta,
        origin=origin or {"onnx": str(path)},
    )


def _check_input(path: Path, value: onnx.ValueInfoProto, input_format: str) -> None:
    tensor = value.type.tensor_type
    dims = [d.dim_value or None for d in tensor.shape.dim]
    expected = (onnx.TensorProto.UINT8, 3) if input_format == "frame" else (onnx.TensorProto.FLOAT, 1)
    channels_at = dims[expected[1]] if len(dims) == 4 else None
    if tensor.elem_type != expected[0] or len(dims) != 4 or channels_at not in (3, None):
        layout = "uint8 [N,H,W,3] BGR frames" if input_format == "frame" else "float32 [N,3,H,W] normalised images"
        raise FcnEdgeError(
            f"{path} input {value.name!r} is {onnx.TensorProto.DataType.Name(tensor.elem_type).lower()} {dims}, "
            f"not {layout}: pass the right --input-format"
        )
