"""Which layers to keep in float so an INT8 model stays within its accuracy budget.

Ranking ("quantize only one layer"): each candidate layer is made INT8 alone, with every
other candidate in float, and scored by label agreement with the FP32 model on tuning
images. A layer that ruins the output on its own ranks first. Then the worst layers are
kept in float one at a time, worst first, until the caller's budget check passes.

Scoring one layer alone, rather than "all but one", is deliberate: a tensor with a huge
outlier range is quantized both by the layer producing it and by the one reading it, so
keeping only one of the two in float changes nothing and "all but one" ranks neither.
Alone, each of the two ruins the output and both rank first.

The pass is generic: the caller passes ``score(excluded)`` and ``meets_budget(excluded)``,
which build and evaluate a Q/DQ model with those layers in float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from tqdm import tqdm


@dataclass
class SensitivityResult:
    ranking: list[tuple[str, float]]  # (layer, agreement with only it INT8), worst first
    kept_float: list[str]  # layers kept in float, in the order they were added
    met: bool  # whether the budget passed with ``kept_float``


def keep_sensitive_layers(
    candidates: Sequence[str],
    score: Callable[[list[str]], float],
    meets_budget: Callable[[list[str]], bool],
    max_layers: int | None = None,
    progress: bool = True,
) -> SensitivityResult:
    """Rank ``candidates`` and keep the worst in float until ``meets_budget`` (at most ``max_layers``)."""
    ranking = []
    for layer in tqdm(candidates, desc="sensitivity: rank layers", leave=False, disable=not progress):
        ranking.append((layer, score([c for c in candidates if c != layer])))
    ranking.sort(key=lambda item: item[1])
    limit = len(ranking) if max_layers is None else min(max_layers, len(ranking))
    kept: list[str] = []
    for layer, _ in ranking[:limit]:
        kept.append(layer)
        if meets_budget(kept):
            return SensitivityResult(ranking, kept, True)
    return SensitivityResult(ranking, kept, False)
