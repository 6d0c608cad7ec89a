"""Latency baselines per machine class, compared as in-run normalised figures.

A latency alone says as much about the neighbours on a shared machine as about the
code. Each latency is divided by a reference workload (a dense matrix product in ONNX
Runtime, same threads) timed interleaved with it in the same run; that ratio is stable
across load and is what the baseline stores. A baseline from another machine class is
refused, never compared: its ratios mean something else.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_json_atomic
from ..errors import FcnEdgeError

BASELINE_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"
DEFAULT_TOLERANCE = 0.30  # a normalised latency 30% above baseline fails


class BaselineMismatch(FcnEdgeError):
    """The baseline was measured on another machine class (or does not exist for this one)."""


@dataclass
class Verdict:
    key: str
    baseline: float
    measured: float
    tolerance: float

    @property
    def ratio(self) -> float:
        return self.measured / self.baseline

    @property
    def ok(self) -> bool:
        return self.ratio <= 1.0 + self.tolerance

    def line(self) -> str:
        state = "ok" if self.ok else "SLOWER"
        return f"{self.key:<28} baseline {self.baseline:7.3f}  now {self.measured:7.3f}  x{self.ratio:5.2f}  {state}"


def baseline_path(machine_class: str, directory: Path = BASELINE_DIR) -> Path:
    return directory / f"{machine_class}.json"


def load_baseline(machine_class: str, directory: Path = BASELINE_DIR) -> dict:
    path = baseline_path(machine_class, directory)
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []
        raise BaselineMismatch(
            f"no latency baseline for machine class {machine_class} (have: {', '.join(known) or 'none'}); "
            "comparing with another class would be a false alarm: record one with "
            "`fcn-edge bench --update-baseline --reason '...'`"
        )
    baseline = json.loads(path.read_text())
    recorded = baseline["fingerprint"]["machine_class"]
    if recorded != machine_class:
        raise BaselineMismatch(f"{path} was recorded on {recorded}, this machine is {machine_class}: refusing to compare")
    return baseline


def compare(baseline: dict, normalised: dict[str, float], tolerance: float | None = None) -> list[Verdict]:
    """One verdict per measured figure; a figure the baseline lacks is an error, not a pass."""
    tol = baseline.get("tolerance", DEFAULT_TOLERANCE) if tolerance is None else tolerance
    unknown = sorted(set(normalised) - set(baseline["normalised"]))
    if unknown:
        raise FcnEdgeError(
            f"the baseline has no figure for {', '.join(unknown)}: record one with "
            "`fcn-edge bench --update-baseline --reason '...'`"
        )
    return [Verdict(key, baseline["normalised"][key], normalised[key], tol) for key in sorted(normalised)]


def save_baseline(
    fingerprint: dict,
    normalised: dict[str, float],
    reference: str,
    reason: str,
    directory: Path = BASELINE_DIR,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Path:
    if not reason.strip():
        raise FcnEdgeError("--reason is required when refreshing a baseline: say why the old one no longer holds")
    directory.mkdir(parents=True, exist_ok=True)
    path = baseline_path(fingerprint["machine_class"], directory)
    history = json.loads(path.read_text()).get("history", []) if path.is_file() else []
    history.append({"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "reason": reason})
    payload = {
        "fingerprint": fingerprint,
        "reference": reference,
        "tolerance": tolerance,
        "normalised": normalised,
        "history": history,
    }
    write_json_atomic(path, payload)
    return path
