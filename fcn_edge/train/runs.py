"""Run folders that never overwrite an earlier run by surprise: runs/default, runs/default2, ..."""

from __future__ import annotations

from pathlib import Path


def run_folder(out: Path, exist_ok: bool) -> Path:
    """``out`` when it is new or empty (or ``exist_ok``), else the first free ``out2``, ``out3``, ..."""
    if exist_ok or not _taken(out):
        return out
    number = 2
    while _taken(out.with_name(f"{out.name}{number}")):
        number += 1
    return out.with_name(f"{out.name}{number}")


def _taken(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())  # a file named so is train.py's one-line error
