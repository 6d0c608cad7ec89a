"""Which classes and members a TensorRT Python bindings wheel registers, read from its compiled extension.

The ``tensorrt_bindings`` wheels (about 1 MB, no libraries) hold ``tensorrt.so``, a pybind11
module that cannot be imported without libnvinfer. pybind11 registers every class, enum,
method, property and enum value by a string literal, so the names are in the file; which
class each belongs to comes from the order of the code that registers them:

- every ``lea reg, [rip+disp32]`` in ``.text`` that points at a printable NUL-terminated
  string in ``.rodata`` is a name the code uses, at that code address;
- function boundaries come from ``.eh_frame`` (present even in stripped libraries); a call
  to a small function (the compiler outlines many ``.def("name", ...)`` instantiations,
  and newer pybind11 outlines ``py::enum_`` constructors) counts as its strings at the call;
- walking each function in address order, a class name starts that class's members, and
  every function start ends it.

Checked against the published 10.x API (``tensorrt-stubs``): the members found for 10.13
match the stubs except pybind11's own enum ``name``/``value`` and a few container classes,
so a name that is absent here was not registered in that release.
"""

from __future__ import annotations

import ast
import bisect
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUTLINED = 4096  # bytes: functions smaller than this count as part of their callers
EXTENSION = "tensorrt_bindings/tensorrt.so"
PACKAGE = "tensorrt_bindings/__init__.py"


def _sections(data: bytes) -> dict[str, tuple[int, int, int]]:
    """ELF64 section name -> (address, file offset, size)."""
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    entsize, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    heads = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * entsize) for i in range(count)]
    names = heads[names_index][4]

    def name(offset: int) -> str:
        return data[names + offset : data.index(b"\0", names + offset)].decode()

    return {name(h[0]): (h[3], h[4], h[5]) for h in heads}


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _functions(data: bytes, address: int, offset: int, size: int) -> list[tuple[int, int]]:
    """(start, length) of every function with a frame description in ``.eh_frame``."""

    def pointer(pos: int, encoding: int) -> tuple[int, int]:
        fmt = {0x00: "<Q", 0x03: "<I", 0x04: "<Q", 0x0B: "<i", 0x0C: "<q"}[encoding & 0x0F]
        (value,) = struct.unpack_from(fmt, data, pos)
        if encoding & 0x70 == 0x10:  # pc-relative
            value += address + (pos - offset)
        return value, pos + struct.calcsize(fmt)

    encodings: dict[int, int] = {}
    found = []
    pos = offset
    while pos < offset + size:
        (length,) = struct.unpack_from("<I", data, pos)
        if length == 0:
            break
        body = pos + 4
        (cie_id,) = struct.unpack_from("<I", data, body)
        if cie_id == 0:  # a CIE: only its FDE pointer encoding matters here
            cursor = body + 5
            end = data.index(b"\0", cursor)
            augmentation = data[cursor:end].decode()
            cursor = end + 1
            for _ in range(3):  # code alignment, data alignment, return register
                _, cursor = _uleb(data, cursor)
            encoding = 0
            if augmentation.startswith("z"):
                _, cursor = _uleb(data, cursor)
                for char in augmentation[1:]:
                    if char == "R":
                        encoding = data[cursor]
                        cursor += 1
                    elif char == "L":
                        cursor += 1
                    elif char == "P":
                        personality = data[cursor]
                        _, cursor = pointer(cursor + 1, personality)
            encodings[pos] = encoding
        else:
            encoding = encodings.get(body - cie_id, 0x1B)
            start, cursor = pointer(body + 4, encoding)
            span, _ = pointer(cursor, encoding & 0x0F)
            found.append((start, span))
        pos = body + length
    return sorted(found)


def _rel32(code: np.ndarray, at: np.ndarray) -> np.ndarray:
    value = code[at] | code[at + 1] << 8 | code[at + 2] << 16 | code[at + 3] << 24
    return np.where(value >= 2**31, value - 2**32, value)


def _string(data: bytes, pos: int) -> str | None:
    end = data.find(b"\0", pos, pos + 300)
    text = data[pos:end] if end > pos else b""
    return text.decode() if text and all(32 <= c < 127 for c in text) else None


def _references(data: bytes) -> tuple[list[tuple[int, str]], list[tuple[int, int]], list[tuple[int, int]]]:
    """(string loads, calls, functions): (address, string), (address, target), (start, length)."""
    sections = _sections(data)
    text_at, text_offset, text_size = sections[".text"]
    ro_at, ro_offset, ro_size = sections[".rodata"]
    code = np.frombuffer(data, np.uint8, text_size, text_offset).astype(np.int64)
    lea = ((code[:-7] == 0x48) | (code[:-7] == 0x4C)) & (code[1:-6] == 0x8D) & ((code[2:-5] & 0xC7) == 0x05)
    sites = np.nonzero(lea)[0]
    targets = text_at + sites + 7 + _rel32(code, sites + 3)
    inside = (targets >= ro_at) & (targets < ro_at + ro_size)
    loads = []
    for site, target in zip(sites[inside].tolist(), targets[inside].tolist()):
        text = _string(data, ro_offset + target - ro_at)
        if text:
            loads.append((text_at + site, text))
    sites = np.nonzero(code[:-5] == 0xE8)[0]
    calls = list(zip((text_at + sites).tolist(), (text_at + sites + 5 + _rel32(code, sites + 1)).tolist()))
    eh_frame = sections[".eh_frame"]
    return loads, calls, _functions(data, *eh_frame)


def registered_members(extension: bytes, class_names: set[str]) -> dict[str, set[str]]:
    """Class name -> every string registered while that class was being defined."""
    loads, calls, functions = _references(extension)
    starts = [start for start, _ in functions]
    lengths = dict(functions)

    def owner(address: int) -> int | None:
        index = bisect.bisect_right(starts, address) - 1
        return starts[index] if index >= 0 and address < starts[index] + lengths[starts[index]] else None

    strings_of: dict[int | None, list[str]] = {}
    for address, text in loads:
        strings_of.setdefault(owner(address), []).append(text)
    events = [(address, 1, text) for address, text in loads]
    for address, target in calls:
        if lengths.get(target, OUTLINED) < OUTLINED and owner(address) != target:
            events += [(address, 1, text) for text in strings_of.get(target, [])]
    events += [(start, 0, "") for start in starts]
    members: dict[str, set[str]] = {}
    current = None
    for _, kind, text in sorted(events):
        if kind == 0:
            current = None
        elif text in class_names:
            current = members.setdefault(text, set())
        elif current is not None:
            current.add(text)
    return members


@dataclass
class Bindings:
    """One release's registered API: classes with their members, plus the package's Python-level names."""

    version: tuple[int, int]
    wheel: str
    members: dict[str, set[str]]
    python_names: set[str]
    bases: dict[str, list[str]]  # class -> base classes (from the published stubs)

    def has(self, name: str) -> bool:
        """ "Class", "Class.member" or "function": registered in this release?"""
        cls, _, member = name.partition(".")
        if not member:
            return cls in self.members or cls in self.python_names
        return self._member(cls, member, set())

    def _member(self, cls: str, member: str, seen: set[str]) -> bool:
        if cls in seen:
            return False
        seen.add(cls)
        return member in self.members.get(cls, ()) or any(self._member(b, member, seen) for b in self.bases.get(cls, []))


def read_bindings(wheel: Path, class_names: set[str], bases: dict[str, list[str]]) -> Bindings:
    """The registered API of one ``tensorrt*_bindings`` wheel (its version from the file name)."""
    with zipfile.ZipFile(wheel) as archive:
        extension = archive.read(EXTENSION)
        package = archive.read(PACKAGE).decode()
    python_names = set()
    for node in ast.parse(package).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            python_names.add(node.name)
        elif isinstance(node, ast.Assign):
            python_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    major, minor = wheel.name.split("-")[1].split(".")[:2]
    return Bindings((int(major), int(minor)), wheel.name, registered_members(extension, class_names), python_names, bases)
