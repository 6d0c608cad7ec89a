"""Artifact naming, the JSON sidecar, and the up-to-date check: the one path rule and schema.

Torch-free: the compile stage writes sidecars, every runner reads them.

    engines/<model>.<precision>.<engine|onnx>         the artifact
    engines/<model>.<precision>.<engine|onnx>.json    its sidecar (written last)
    engines/<model>.int8.trt-qdq.onnx                 Q/DQ model for TensorRT (explicit quantization)
    engines/<model>.int8.calib                        TensorRT calibration cache (implicit quantization)
    engines/<model>.int8.calib.onnx                   the FP32 graph whose tensor names the cache uses

The sidecar holds what a runtime needs (classes, palette, preprocessing, I/O, profiles)
and what the artifact was made from: hashes of the source (checkpoint or ONNX, external
data included) and of the calibration set, the build options and library versions, folded
into one ``key``. A build whose key and file hashes match a well-formed sidecar is skipped;
anything else (a sidecar edited by hand included) rebuilds. ``<model>`` is a plain file
name, never a path. All files are written under temporary names and renamed together, the
sidecar last, so a build that dies leaves the old files or the new ones, never a mix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import onnx

from .capabilities import PRECISIONS
from .atomic import check_writable, json_text
from .errors import FcnEdgeError
from .metadata import classes_problem
from .paths import file_sha256, is_utf8

FORMAT = "fcn_edge.artifact/1"
IMAGES_TEXT = ("kind", "data", "split", "sha256")  # what verified_data_changed reads of verification.images
MAX_NAME_BYTES = 200  # leaves room in the 255-byte file name limit for ".int8.trt-qdq.onnx.json" and a temp suffix


def sidecar_path(artifact: Path) -> Path:
    """``engines/x.fp16.engine`` -> ``engines/x.fp16.engine.json``."""
    return artifact.with_name(artifact.name + ".json")


@dataclass(frozen=True)
class Sidecar:
    """The sidecar beside an artifact as a runner reads it: parsed once per open and handed on.

    ``content`` is the JSON object, empty when there is none; ``problem`` then says why (each backend
    decides whether it can run without one: ONNX Runtime and OpenVINO can, TensorRT cannot).
    """

    path: Path
    content: dict[str, Any]
    problem: str | None = None

    @classmethod
    def beside(cls, artifact: Path) -> Sidecar:
        path = sidecar_path(Path(artifact))
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path, {}, "missing")
        except (OSError, UnicodeDecodeError) as error:
            return cls(path, {}, f"unreadable ({error})")
        try:
            content = json.loads(text)
        except ValueError as error:
            return cls(path, {}, f"not valid JSON ({error})")
        except RecursionError:
            return cls(path, {}, "nested too deeply to be a sidecar")
        if not isinstance(content, dict):
            return cls(path, {}, "not a JSON object")
        return cls(path, content)

    @property
    def precision(self) -> str | None:
        return sidecar_text(self.content, "precision")

    @property
    def built_for(self) -> str | None:
        """The backend the build chose to run the artifact: a hint only (a sidecar edited by hand may lack it)."""
        return sidecar_text(self.content, "backend", "name")

    def classes(self) -> tuple[list[str] | None, list[tuple[int, int, int]] | None]:
        """Class names and palette from the ``model`` entry; (None, None) if it has none or they are malformed."""
        model = self.content.get("model")
        if _model_problem(model):
            return None, None
        return list(model["classes"]), [tuple(c) for c in model["palette"]]


def sidecar_text(sidecar: dict[str, Any] | None, *keys: str) -> str | None:
    """``sidecar[k1][k2]...`` when every level is an object and the value a string; None otherwise (a sidecar edited by
    hand must not crash a reader that only wants a hint from it)."""
    value: Any = sidecar
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


def artifact_name(checkpoint: Path) -> str:
    """A checkpoint's artifacts are named after its run: runs/parts2/best.pt -> 'parts2', last.pt -> 'parts2-last'.

    Every run has a best.pt: named after the file, the next run's build would replace the last one's.
    """
    stem, run = checkpoint.stem, checkpoint.resolve().parent.name
    if stem not in ("best", "last") or not run:
        return stem
    return run if stem == "best" else f"{run}-last"


def check_name(name: str) -> None:
    """Artifact names become file names in the engines folder: never a path, never hidden, never too long, always
    UTF-8 (they are written into the sidecar and shown)."""
    if not is_utf8(name):
        raise FcnEdgeError(f"artifact name {name!r} (--name, else the model file's stem) is not UTF-8 text: rename it")
    if (
        not name.strip() or name != name.strip() or name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\\0")
        or len(name.encode("utf-8")) > MAX_NAME_BYTES
    ):  # fmt: skip
        raise FcnEdgeError(
            f"artifact name {name!r} (--name, else the run folder or model file name) is not a plain file name: use letters, digits, "
            f"'-', '_' and '.', no '/', leading '.' or surrounding spaces, at most {MAX_NAME_BYTES} bytes"
        )


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


def check_engines_dir(engines_dir: Path) -> bool:
    """Create ``engines_dir`` if its parent exists (True when created); a one-line error if it cannot hold files."""
    if engines_dir.exists() and not engines_dir.is_dir():
        raise FcnEdgeError(f"--engines-dir {engines_dir} is a file, not a folder: choose a folder")
    created = not engines_dir.exists()
    if created:
        parent = engines_dir.parent
        if not parent.is_dir():
            raise FcnEdgeError(
                f"--engines-dir {engines_dir}: its parent {parent} is not a folder; create it or choose another path"
            )
        try:
            engines_dir.mkdir()
        except OSError as error:
            raise FcnEdgeError(f"cannot create --engines-dir {engines_dir}: {error.strerror}; choose another folder") from None
    check_writable(engines_dir, "--engines-dir")  # a read-only folder is found now, not after the build
    return created


def build_key(inputs: dict[str, Any], options: dict[str, Any]) -> str:
    """One hash of everything the artifact depends on."""
    text = json.dumps({"inputs": inputs, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def up_to_date(paths: ArtifactPaths, key: str, log: Callable[[str], None] = print) -> dict | None:
    """The sidecar when it is well-formed, has ``key`` and every file it lists still has its recorded hash; else None.

    A sidecar that does not match the schema (edited by hand, truncated) means "rebuild",
    said through ``log``; so does one of another format version, silently.
    """
    if not paths.sidecar.exists():
        return None
    try:
        sidecar = json.loads(paths.sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        sidecar = None
    if isinstance(sidecar, dict) and sidecar.get("format") != FORMAT:
        return None
    problem = schema_problem(sidecar, paths)
    if problem:
        log(f"{paths.sidecar} is damaged ({problem}): rebuilding")
        return None
    if sidecar["key"] != key:
        return None
    for entry in sidecar["files"].values():
        path = paths.sidecar.parent / entry["path"]
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            return None
    return sidecar


def schema_problem(sidecar: Any, paths: ArtifactPaths) -> str | None:
    """What is wrong with a sidecar for ``paths`` (None when nothing): the fields the skip check and runners read."""
    if not isinstance(sidecar, dict):
        return "not a JSON object"
    if not isinstance(sidecar.get("key"), str):
        return "no key"
    files = sidecar.get("files")
    expected = {"artifact": paths.artifact.name, **{role: p.name for role, p in paths.extras.items()}}
    if not isinstance(files, dict) or set(files) != set(expected):
        return f"files must list {', '.join(sorted(expected))}"
    for role, entry in files.items():
        if not isinstance(entry, dict) or entry.get("path") != expected[role] or not _is_sha256(entry.get("sha256")):
            return f"files.{role} must have path {expected[role]!r} and a sha256"
    verification = sidecar.get("verification")
    if (
        not isinstance(verification, dict)
        or not isinstance(verification.get("table"), str)
        or not isinstance(verification.get("passed"), bool)
    ):
        return "no verification table and result"
    images = verification.get("images")
    if images is not None and not (
        isinstance(images, dict) and all(isinstance(images.get(k), (str, type(None))) for k in IMAGES_TEXT)
        and (images.get("kind") != "dataset" or all(isinstance(images.get(k), str) for k in IMAGES_TEXT))
    ):  # fmt: skip
        return f"verification.images must be an object whose {', '.join(IMAGES_TEXT)} are strings"
    backend = sidecar.get("backend")
    if not isinstance(backend, dict) or not isinstance(backend.get("name"), str):
        return "backend must be an object with a name"
    if sidecar.get("precision") not in PRECISIONS:
        return f"precision must be one of {', '.join(PRECISIONS)}"
    return _model_problem(sidecar.get("model"))


def _model_problem(model: Any) -> str | None:
    if not isinstance(model, dict):
        return "no model entry"
    return classes_problem(model.get("classes"), model.get("palette"), "model.")


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def file_entry(path: Path, written: Path | None = None) -> dict[str, Any]:
    """The sidecar's record of ``path``, whose bytes are at ``written`` until the build renames them into place."""
    actual = written or path
    return {"path": path.name, "sha256": file_sha256(actual), "bytes": actual.stat().st_size}


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


def write_sidecar(paths: ArtifactPaths, content: dict[str, Any], staged: dict[Path, Path]) -> None:
    """Write the sidecar into its staged file, recording the staged bytes of the artifact and extras (see atomic_files)."""
    files = {"artifact": file_entry(paths.artifact, staged[paths.artifact])}
    files.update({role: file_entry(p, staged[p]) for role, p in paths.extras.items()})
    text = json_text({"format": FORMAT, **content, "files": files})  # strict: an unmeasurable mIoU is null
    staged[paths.sidecar].write_text(text, encoding="utf-8")
