"""What the command line names as streams: each source flag (repeatable) or ``--sources`` line becomes one stream with an
id (its place, from 0) and a name, and each stream's output paths come from one template or folder.

A ``--sources`` file has one source a line, ``[NAME ]URI`` (two fields: a name, then the URI); blank lines and ``#`` comments are skipped. URIs:
``rtsp://``, ``rtsp(s)://``, ``http(s)://`` (network streams), ``camera:N``, ``/dev/videoN``, ``video:PATH``,
``images:DIR``, ``synthetic`` (or ``synthetic:SEED``), and a bare path (a folder: images, a file: video).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import FcnEdgeError
from . import sources

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class SourceSpec:
    kind: str  # camera, device, csi, gst, url, video, images, synthetic
    value: str
    name: str = ""  # given in a --sources file; else made from the source


def parse_uri(uri: str, where: str) -> SourceSpec:
    """One ``--sources`` URI as a spec; FcnEdgeError naming ``where`` (file:line) for one it cannot read."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in NETWORK_SCHEMES:
        return SourceSpec("url", uri)
    if scheme == "camera":
        index = uri.split(":", 1)[1]
        if not index.isdigit():
            raise FcnEdgeError(f"{where}: {uri!r} is not camera:N with N a camera index, e.g. camera:0")
        return SourceSpec("camera", index)
    if scheme in ("video", "images"):
        return SourceSpec(scheme, uri.split(":", 1)[1])
    if scheme == "synthetic" or uri == "synthetic":
        seed = uri.split(":", 1)[1] if ":" in uri else "0"
        if not seed.isdigit():
            raise FcnEdgeError(f"{where}: {uri!r} is not synthetic or synthetic:SEED")
        return SourceSpec("synthetic", seed)
    if uri.startswith("/dev/"):
        return SourceSpec("device", uri)
    path = Path(uri)
    if path.is_dir():
        return SourceSpec("images", uri)
    if path.is_file():
        return SourceSpec("video", uri)
    raise FcnEdgeError(
        f"{where}: {uri!r} is neither a file, a folder nor a URI this reads "
        "(rtsp://, http://, camera:N, /dev/videoN, video:PATH, images:DIR, synthetic)"
    )


def read_sources_file(path: Path) -> list[SourceSpec]:
    """The streams a --sources file lists, in order."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise FcnEdgeError(f"--sources {path} cannot be read ({error}): give a text file of one URI a line") from None
    specs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 1)
        name, uri = (fields[0], fields[1].strip()) if len(fields) == 2 else ("", line)
        spec = parse_uri(uri, f"--sources {path} line {number}")
        spec.name = name
        specs.append(spec)
    if not specs:
        raise FcnEdgeError(f"--sources {path} lists no source: write one URI a line, e.g. rtsp://camera1/stream")
    return specs


def default_name(spec: SourceSpec) -> str:
    """A short name for a stream: camera0, the video's stem, the folder's name, the network stream's host."""
    if spec.kind in ("camera", "csi"):
        return f"{spec.kind}{spec.value}"
    if spec.kind == "device":
        return Path(spec.value).name
    if spec.kind in ("video", "images"):
        return Path(spec.value).stem or spec.kind
    if spec.kind == "url":
        parts = urlsplit(spec.value)
        return "-".join(p for p in (parts.hostname or "stream", parts.path.strip("/").replace("/", "-")) if p)
    if spec.kind == "synthetic":
        return f"synthetic{spec.value}"
    return spec.kind


def stream_names(specs: list[SourceSpec]) -> list[str]:
    """One unique, file-name-safe name per stream (a second "cam" becomes "cam-2")."""
    names: list[str] = []
    for spec in specs:
        base = NAME.sub("_", spec.name or default_name(spec)).strip("_") or "stream"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def open_spec(spec: SourceSpec, size: tuple[int, int] | None, fps: float | None) -> sources.Source:
    """The (unopened) source of one spec; ``size`` is (width, height), as OpenCV takes it."""
    if spec.kind == "camera":
        return sources.camera(int(spec.value), size, fps)
    if spec.kind == "device":
        return sources.device(spec.value, size, fps)
    if spec.kind == "csi":
        return sources.csi(int(spec.value), size, fps)
    if spec.kind == "gst":
        return sources.gstreamer(spec.value, fps=fps)
    if spec.kind == "url":
        return sources.url(spec.value)
    if spec.kind == "video":
        return sources.video(spec.value)
    if spec.kind == "images":
        return sources.ImageFolderSource(spec.value)
    default = sources.SYNTHETIC_DEFAULT
    return sources.SyntheticSource(size or default[:2], default[2] if fps is None else fps, seed=int(spec.value))


def output_paths(flag: str, given: Path | None, names: list[str], suffix: str) -> list[Path | None]:
    """Each stream's path for an output flag: a template with {name} or {id}, or a folder (``suffix`` "": the folder
    per stream is FOLDER/NAME; else FOLDER/NAME.SUFFIX); one stream takes the path as it is."""
    if given is None:
        return [None] * len(names)
    text = str(given)
    if "{" in text:
        try:
            paths = [Path(text.format(name=name, id=i)) for i, name in enumerate(names)]
        except (KeyError, IndexError, ValueError) as error:
            raise FcnEdgeError(f"{flag} {text}: a template may use {{name}} and {{id}} only ({error!r})") from None
        if len(set(paths)) < len(paths):
            raise FcnEdgeError(f"{flag} {text} gives several streams the same path: use {{name}} or {{id}} in it")
        return paths
    if len(names) == 1:
        return [given]
    if suffix and given.suffix and not given.is_dir():
        raise FcnEdgeError(
            f"{flag} {given} names one file for {len(names)} streams: use a template such as "
            f"{given.parent / ('{name}' + given.suffix)} or a folder"
        )
    return [given / (name + suffix) for name in names]
