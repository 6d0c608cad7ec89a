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
OUTPUTS = ("logits", "labels")
MAX_DEPTH = 32  # of lists and objects in a metadata value: more is hand-made, and would exhaust the recursion of JSON writers
FIELDS = ("classes", "palette", "preprocess", "input_format", "outputs", "output_stride", "source_sha256", "model_config")


class DamagedMetadata(FcnEdgeError):
    """The model has fcn_edge metadata, but it cannot be used (edited by hand, or made by another tool): unlike a model
    with none, which runs with default colours, this stops a run."""


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

    def problem(self) -> str | None:
        """What makes this metadata unusable by the later stages (None when nothing): checked where it is read and
        before it is written, so a model the project makes always passes its own checks."""
        return (
            classes_problem(self.classes, self.palette)
            or (self.input_format not in INPUT_FORMATS and f"input_format must be one of {', '.join(INPUT_FORMATS)}")
            or ((not self.outputs or not set(self.outputs) <= set(OUTPUTS)) and f"outputs must name {' and/or '.join(OUTPUTS)}")
            or (not 1 <= self.output_stride <= 1024 and f"output_stride {self.output_stride} must be 1..1024")
            or (depth(self.model_config) > MAX_DEPTH and f"model_config is nested deeper than {MAX_DEPTH} levels")
            or None
        )

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelMetadata":
        values = {k: json.loads(props[PREFIX + k]) for k in FIELDS}
        if not isinstance(values["palette"], list) or not all(isinstance(c, list) for c in values["palette"]):
            raise ValueError("palette must be a list of [r, g, b]")
        if not isinstance(values["classes"], list) or not all(isinstance(c, str) for c in values["classes"] + values["outputs"]):
            raise ValueError("classes and outputs must be lists of names")
        if not all(type(v) is int for c in values["palette"] for v in c) or type(values["output_stride"]) is not int:
            raise ValueError("palette values and output_stride must be whole numbers")
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


def classes_problem(classes: Any, palette: Any, prefix: str = "") -> str | None:
    """What is wrong with class names and an RGB palette as a model or sidecar carries them (None when nothing): names
    non-empty strings, 1..256 of them (uint8 labels), and exactly one [r, g, b] of whole numbers 0..255 per class."""
    if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) and c.strip() for c in classes):
        return f"{prefix}classes must be a list of non-empty names"
    if len(classes) > 256:
        return f"{prefix}classes lists {len(classes)} names; uint8 labels hold 256 at most"
    if not isinstance(palette, (list, tuple)) or len(palette) != len(classes):
        return f"{prefix}palette must have one colour per class ({len(classes)})"
    for index, colour in enumerate(palette):
        if not (isinstance(colour, (list, tuple)) and len(colour) == 3 and all(type(v) is int and 0 <= v <= 255 for v in colour)):
            return f"{prefix}palette[{index}] is {str(colour)[:40]}: give [r, g, b] of whole numbers 0..255"
    return None


def depth(value: Any) -> int:
    """How deeply lists and objects nest in a JSON value (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, level + 1))
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
    return deepest


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
    """Set our keys in ``model.metadata_props`` in place, replacing any earlier ones and keeping others; one line
    when the metadata would not pass ``read_metadata`` (a palette value of 300 in a checkpoint)."""
    problem = meta.problem()
    if problem:
        raise FcnEdgeError(f"cannot write this model's fcn_edge metadata: {problem}; fix the checkpoint's classes and palette")
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
        meta = ModelMetadata.from_props(props)
    except RecursionError:
        raise DamagedMetadata(
            f"{label} has fcn_edge metadata nested too deeply to read: re-export it with fcn-edge export"
        ) from None
    except (ValueError, TypeError, KeyError) as error:
        raise DamagedMetadata(f"{label} has unreadable fcn_edge metadata ({error}): re-export it with fcn-edge export") from None
    problem = meta.problem()
    if problem:
        raise DamagedMetadata(f"{label} has invalid fcn_edge metadata ({problem}): fix it or re-export with fcn-edge export")
    return meta
