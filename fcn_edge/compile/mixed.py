"""Mixed precision for an INT8 build that misses its budget: which quantized nodes to keep in float.

Every node the INT8 model quantizes is a candidate (convolutions, Adds, ...: keeping all of
them in float is the FP32 model), ranked once by the labels it changes when quantized alone
(:mod:`fcn_edge.quantize.node_flips`) where that fits in FLIPS_SHARE of the time, else by its own
quantization error (:mod:`fcn_edge.quantize.layer_error`), and searched by
:mod:`fcn_edge.quantize.sensitivity` within ``--search-minutes``: each trial is a real Q/DQ model verified on the build's images
against the same budget as the artifact.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from ..quantize import qdq, sensitivity
from ..quantize.layer_error import layer_errors
from ..quantize.node_flips import node_flips
from ..quantize.statistics import TensorRanges

RANKING_IMAGES = 8  # calibration images the rankings run on
FLIPS_SHARE = 0.4  # of --search-minutes, the most the label-flips ranking may take (else the one-pass ranking)
PLACEMENTS = ("onnxruntime", "tensorrt")  # every INT8 file a build writes meets the budget


@dataclass
class Trial:
    """One set of nodes kept in float: its Q/DQ model per placement and their verification figures."""

    paths: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)  # placement -> verify.Figures
    unquantized: list[str] = field(default_factory=list)  # inputs the TensorRT placement rules left float


class Trials:
    """Q/DQ models for sets of nodes kept in float, each built and verified once, the ONNX Runtime placement first.

    ``compare(path, placement)`` verifies a model like the artifact; ``problems(figures)`` is
    the budget's verdict. A set that misses the budget on ONNX Runtime is not built for
    TensorRT at all, and the files of a set that misses are deleted (ResNet-50 Q/DQ models
    are 30 MB each) and the set forgotten; the all-INT8 set keeps its files, the ranking reads them.
    """

    def __init__(self, prepared: Path, ranges: TensorRanges, folder: Path, compare: Callable, problems: Callable):
        self.prepared, self.ranges, self.folder, self.compare, self.budget = prepared, ranges, folder, compare, problems
        self.made: dict[tuple[str, ...], Trial] = {}
        self.files = itertools.count(1)  # file numbers: unique even after a missed set is forgotten

    def get(self, excluded: Sequence[str], placements: Sequence[str] = PLACEMENTS) -> Trial:
        trial = self.made.setdefault(tuple(excluded), Trial())
        for placement in placements:
            if placement not in trial.figures:
                path = self.folder / f"int8.trial{next(self.files)}.{placement}.onnx"
                freed = qdq.quantize(self.prepared, path, self.ranges, placement, list(excluded))
                trial.unquantized = freed if placement == "tensorrt" else trial.unquantized
                trial.paths[placement], trial.figures[placement] = path, self.compare(path, placement)
        return trial

    def problems(self, excluded: Sequence[str]) -> list[str]:
        """What the set misses, placement by placement, stopping at the first that misses."""
        for placement in PLACEMENTS:
            found = self.budget(self.get(excluded, [placement]).figures[placement])
            if found:
                if excluded:  # forgotten with its files: a later get() (--allow-accuracy-drop) builds it again
                    for path in self.made.pop(tuple(excluded)).paths.values():
                        path.unlink(missing_ok=True)
                return [f"{placement}: {problem}" for problem in found]
        return []

    def meets(self, excluded: list[str]) -> bool:
        return not self.problems(excluded)


def keep_in_float(
    prepared: Path,
    quantized: Path,
    ranges: TensorRanges,
    feeds: Sequence[dict[str, np.ndarray]],
    meets_budget: Callable[[list[str]], bool],
    minutes: float,
    log: Callable[[str], None],
    progress: bool = True,
) -> tuple[list[str], dict]:
    """(nodes to keep in float, what the search did for the sidecar); ``quantized`` is the all-INT8 model of ``prepared``."""
    started = time.monotonic()
    model = onnx.load(str(prepared))
    candidates = qdq.quantizable_nodes(model)
    images = feeds[:RANKING_IMAGES]
    errors = layer_errors(model, onnx.load(str(quantized)), candidates, images, progress=progress)
    worst = ", ".join(f"{name} ({errors[name]:.2g})" for name in sensitivity.rank(errors, candidates)[:3] if name in errors)
    log(f"ranked {len(candidates)} quantized nodes by their own error in {time.monotonic() - started:.0f} s "
        f"({len(images)} images, one pass each); worst: {worst}")  # fmt: skip
    flips_started = time.monotonic()
    flips = node_flips(
        prepared, ranges, candidates, images, quantized.parent, FLIPS_SHARE * 60 * minutes - (flips_started - started), progress
    )
    if flips is None:
        ranking, ranked_by = sensitivity.rank(errors, candidates), "noise_to_signal"
        log(f"ranking by the labels each node changes alone would take over {FLIPS_SHARE:.0%} of --search-minutes {minutes:g}: "
            "searching on the one-pass ranking")  # fmt: skip
    else:
        ranking, ranked_by = sensitivity.rank_by_flips(flips, errors, candidates), "label_flips"
        worst = ", ".join(f"{name} ({flips[name]:.2%})" for name in ranking[:3])
        log(f"ranked them by the labels each changes alone in {time.monotonic() - flips_started:.0f} s "
            f"({len(candidates)} models, {len(images)} images each); worst: {worst}")  # fmt: skip

    def left() -> float:
        return 60 * minutes - (time.monotonic() - started)

    result = sensitivity.fewest_in_float(ranking, meets_budget, left(), log)
    kept, back = sensitivity.quantize_back(result.kept_float, meets_budget, left(), log)
    result.trials += back
    out_of_time = result.out_of_time or left() <= 0
    if out_of_time:
        log(f"search: --search-minutes {minutes:g} ran out; keeping the best found, {len(kept)} of {len(ranking)} nodes in float")
    details = {
        "candidates": len(ranking),
        "ranked_by": ranked_by,
        "ranking": [
            {"node": name, "noise_to_signal": errors.get(name), "label_flips": (flips or {}).get(name)} for name in ranking
        ],
        "trials": [{"kept_float": k, "met": ok} for k, ok in result.trials],
        "out_of_time": out_of_time,
        "seconds": round(time.monotonic() - started, 1),
    }
    if len(kept) == len(ranking):  # not INT8 any more: the build says so and does not pass it off as one
        closest = max((k for k, _ in result.trials), default=0)
        details["problems"] = [
            f"no INT8 left: only all {len(ranking)} quantized nodes in float (the FP32 model) met the budget"
            + (f", {closest} did not" if closest else "")
            + (f" in --search-minutes {minutes:g}" if out_of_time else "")
        ]
    return kept, details
