"""The FP32 model a build starts from, and how to feed it camera frames.

Our exports carry classes, preprocessing and input format in their metadata; any other
ONNX segmentation model gets them from flags (``--input-format``, ``--mean``, ``--std``,
``--classes``/``--num-classes``). Either way the build knows one thing: how a uint8 BGR
frame becomes this model's input, the same way the runtime will do it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import onnx

from ..errors import FcnEdgeError

if TYPE_CHECKING:  # they import torch; load_onnx must stay fast for the up-to-date check
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
