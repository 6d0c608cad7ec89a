"""What travels inside an exported .onnx file so that later stages need nothing else.

Quantize, build and runtime read the class names, palette, preprocessing, input format,
output names and output stride from the model's ``metadata_props`` rather than from flags
or the checkpoint, so an engine built from this file runs a camera on its own. Every
value is a JSON string (``fcn_edge.format`` is the plain tag); the key names are a
contract with those stages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import onnx
from google.protobuf.message import DecodeError

from .errors import FcnEdgeError
from .spec import Preprocess

FORMAT = "fcn_edge.onnx/1"
PREFIX = "fcn_edge."
INPUT_FORMATS = ("frame", "tensor")
FIELDS = ("classes", "palette", "preprocess", "input_format", "outputs", "output_stride", "source_sha256", "model_config")


@dataclass(frozen=True)
class ModelMetadata:
    classes: list[str]
    palette: list[tuple[int, int, int]]  # RGB per class
    preprocess: Preprocess
    input_format: str  # "frame": uint8 NHWC BGR; "tensor": float32 NCHW normalised
    outputs: list[str]  # graph output names, in order: "logits" and/or "labels"
    output_stride: int
    source_sha256: str  # of the checkpoint the model came from
    model_config: dict[str, Any]

    def to_props(self) -> dict[str, str]:
        values = {
            "classes": list(self.classes),
            "palette": [list(map(int, colour)) for colour in self.palette],
            "preprocess": self.preprocess.to_dict(),
            "input_format": self.input_format,
            "outputs": list(self.outputs),
            "output_stride": int(self.output_stride),
            "source_sha256": self.source_sha256,
            "model_config": self.model_config,
        }
        return {PREFIX + "format": FORMAT, **{PREFIX + k: json.dumps(v) for k, v in values.items()}}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelMetadata":
        values = {k: json.loads(props[PREFIX + k]) for k in FIELDS}
        return cls(
            classes=[str(c) for c in values["classes"]],
            palette=[tuple(int(v) for v in colour) for colour in values["palette"]],
            preprocess=Preprocess.from_dict(values["preprocess"]),
            input_format=str(values["input_format"]),
            outputs=[str(o) for o in values["outputs"]],
            output_stride=int(values["output_stride"]),
            source_sha256=str(values["source_sha256"]),
            model_config=dict(values["model_config"]),
        )


def check_classes(classes: Sequence[str], where: str) -> None:
    """Class names become label meanings and legend entries: none empty, none twice (``where`` names the source)."""
    if any(not c.strip() for c in classes):
        raise FcnEdgeError(f"{where} has an empty class name: give every class a name")
    twice = sorted({c for c in classes if list(classes).count(c) > 1})
    if twice:
        raise FcnEdgeError(f"{where} names {', '.join(map(repr, twice))} more than once: class names must differ")


def class_difference(ours: Sequence[str], theirs: Sequence[str], where: str) -> str:
    """'has N classes, WHERE has M' or where the names first differ, each name as repr (a BOM or a
    trailing space shows): for an error line."""
    if len(ours) != len(theirs):
        return f"has {len(ours)} classes, {where} has {len(theirs)}"
    index = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
    return f"names class {index} {ours[index]!r}, {where} {theirs[index]!r}"


def write_metadata(model: onnx.ModelProto, meta: ModelMetadata) -> None:
    """Set our keys in ``model.metadata_props`` in place, replacing any earlier ones and keeping others."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    onnx.helper.set_model_props(model, {**dict(kept), **meta.to_props()})


def read_metadata(source: str | Path | onnx.ModelProto) -> ModelMetadata:
    """Our metadata from a .onnx path or a loaded model; FcnEdgeError naming the file if it has none."""
    if isinstance(source, onnx.ModelProto):
        model, label = source, "the ONNX model"
    else:
        label = str(source)
        if not Path(source).is_file():
            raise FcnEdgeError(f"ONNX model {label} does not exist: export one with fcn-edge export")
        try:
            model = onnx.load(source, load_external_data=False)
        except DecodeError:
            raise FcnEdgeError(f"{label} is not an ONNX model: pass an .onnx file written by fcn-edge export") from None
    props = {p.key: p.value for p in model.metadata_props}
    missing = [PREFIX + k for k in ("format", *FIELDS) if PREFIX + k not in props]
    if missing:
        raise FcnEdgeError(
            f"{label} has no fcn_edge metadata (missing {', '.join(missing[:3])}"
            f"{'...' if len(missing) > 3 else ''}): export it with fcn-edge export or pass the classes and "
            "preprocessing as flags"
        )
    if props[PREFIX + "format"] != FORMAT:
        raise FcnEdgeError(
            f"{label} has fcn_edge metadata format {props[PREFIX + 'format']!r}, this version reads {FORMAT!r}: "
            "re-export it with fcn-edge export"
        )
    try:
        return ModelMetadata.from_props(props)
    except (ValueError, TypeError, KeyError) as error:
        raise FcnEdgeError(f"{label} has unreadable fcn_edge metadata ({error}): re-export it with fcn-edge export") from None
