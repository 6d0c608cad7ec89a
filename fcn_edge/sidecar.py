"""Artifact naming, the JSON sidecar, and the up-to-date check: the one path rule and schema.

Torch-free: the compile stage writes sidecars, every runner reads them.

    engines/<model>.<precision>.<engine|onnx>         the artifact
    engines/<model>.<precision>.<engine|onnx>.json    its sidecar (written last)
    engines/<model>.int8.trt-qdq.onnx                 Q/DQ model for TensorRT (explicit quantization)
    engines/<model>.int8.calib                        TensorRT calibration cache (implicit quantization)
    engines/<model>.int8.calib.onnx                   the FP32 graph whose tensor names the cache uses

The sidecar holds what a runtime needs (classes, palette, preprocessing, I/O, profiles)
and what the artifact was made from: hashes of the source (checkpoint or ONNX) and of the
calibration set, the build options and library versions, folded into one ``key``. A build
whose key and file hashes match an existing sidecar is skipped; anything else rebuilds.
Every file is written atomically and the sidecar last, so a build that dies leaves no
sidecar claiming files that are not there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from .atomic import write_text_atomic
from .errors import FcnEdgeError
from .paths import file_sha256

FORMAT = "fcn_edge.artifact/1"
PRECISIONS = ("int8", "fp16", "fp32")


def sidecar_path(artifact: Path) -> Path:
    """``engines/x.fp16.engine`` -> ``engines/x.fp16.engine.json``."""
    return artifact.with_name(artifact.name + ".json")


def read_sidecar(artifact: Path) -> dict[str, Any] | None:
    """The sidecar beside ``artifact`` as a dict; None when there is none or it is not a JSON object."""
    try:
        content = json.loads(sidecar_path(artifact).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def sidecar_classes(artifact: Path) -> tuple[list[str] | None, list[tuple[int, int, int]] | None]:
    """Class names and palette from the sidecar's ``model`` entry; (None, None) if it has none."""
    try:
        model = (read_sidecar(artifact) or {})["model"]
        return [str(c) for c in model["classes"]], [tuple(int(v) for v in c) for c in model["palette"]]
    except (KeyError, TypeError, ValueError):
        return None, None


@dataclass(frozen=True)
class ArtifactPaths:
    artifact: Path
    extras: dict[str, Path]  # role -> path, written alongside (int8 only)

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.artifact)

    def all(self) -> list[Path]:
        return [self.artifact, *self.extras.values()]


def artifact_paths(engines_dir: Path, name: str, precision: str, backend: str) -> ArtifactPaths:
    ext = "engine" if backend == "tensorrt" else "onnx"
    base = engines_dir / f"{name}.{precision}"
    extras = {}
    if precision == "int8":
        extras = {
            "tensorrt_qdq_onnx": base.with_name(base.name + ".trt-qdq.onnx"),
            "tensorrt_calibration_cache": base.with_name(base.name + ".calib"),
            "tensorrt_calibration_onnx": base.with_name(base.name + ".calib.onnx"),
        }
    return ArtifactPaths(base.with_name(f"{base.name}.{ext}"), extras)


def check_engines_dir(engines_dir: Path) -> None:
    """Create ``engines_dir`` if its parent exists; a one-line error if it cannot hold files."""
    if engines_dir.exists() and not engines_dir.is_dir():
        raise FcnEdgeError(f"--engines-dir {engines_dir} is a file, not a folder: choose a folder")
    if not engines_dir.exists():
        parent = engines_dir.parent
        if not parent.is_dir():
            raise FcnEdgeError(f"--engines-dir {engines_dir}: its parent {parent} is not a folder; create it or choose another path")
        try:
            engines_dir.mkdir()
        except OSError as error:
            raise FcnEdgeError(f"cannot create --engines-dir {engines_dir}: {error.strerror}; choose another folder") from None


def build_key(inputs: dict[str, Any], options: dict[str, Any]) -> str:
    """One hash of everything the artifact depends on."""
    text = json.dumps({"inputs": inputs, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def up_to_date(paths: ArtifactPaths, key: str) -> dict | None:
    """The sidecar when it has ``key`` and every file it lists still has its recorded hash; else None."""
    sidecar = read_sidecar(paths.artifact)
    if sidecar is None or sidecar.get("format") != FORMAT or sidecar.get("key") != key:
        return None
    for entry in sidecar.get("files", {}).values():
        path = paths.sidecar.parent / entry["path"]
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            return None
    return sidecar


def file_entry(path: Path) -> dict[str, Any]:
    return {"path": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def io_description(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """Names, dtypes and shapes (symbolic dims by name) of the graph's inputs and outputs."""

    def describe(value: onnx.ValueInfoProto) -> dict[str, Any]:
        tensor = value.type.tensor_type
        return {
            "name": value.name,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
            "shape": [d.dim_param or d.dim_value for d in tensor.shape.dim],
        }

    initializers = {t.name for t in model.graph.initializer}
    return {
        "inputs": [describe(v) for v in model.graph.input if v.name not in initializers],
        "outputs": [describe(v) for v in model.graph.output],
    }


def write_sidecar(paths: ArtifactPaths, content: dict[str, Any]) -> None:
    files = {"artifact": file_entry(paths.artifact), **{role: file_entry(p) for role, p in paths.extras.items()}}
    write_text_atomic(paths.sidecar, json.dumps({"format": FORMAT, **content, "files": files}, indent=2) + "\n")
