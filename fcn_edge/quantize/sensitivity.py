"""Which quantized nodes to keep in float so an INT8 model meets its accuracy budget, in bounded time.

Candidates are every node the INT8 model quantizes (convolutions, but also the Adds and
whatever else carries Q/DQ), so keeping all of them in float is the FP32 model: the search
can always reach the budget, at worst by giving up INT8 entirely, and says so.

1. Rank: one pass per tuning image measures each node's own quantization error
   (:mod:`.layer_error`), worst first. Its cost is about two FP32 passes per image, not
   one evaluation per node.
2. Search: keep the ``k`` worst nodes in float, ``k`` growing 1, 2, 4, ... until the budget
   is met, then bisect between the last miss and the first hit. Each trial builds and
   verifies a real Q/DQ model (the ranking is a proxy; the budget is checked on real
   images). ``k = 0`` is known to miss (the caller tried it) and ``k = all`` to meet
   (it is the FP32 model), so about ``2 log2(k)`` trials find the smallest ``k`` the
   ranking allows, and when the time budget runs out the smallest ``k`` known to meet
   the budget is the answer.
3. Quantize back (:func:`quantize_back`): the prefix found, less each of its nodes that the
   budget does not need, tried one at a time in the time left.

The ranking is by the labels each node changes when quantized alone (:mod:`.node_flips`, one
model per node) where that fits in a share of the time, else by the one-pass error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence


@dataclass
class SearchResult:
    kept_float: list[str]  # the worst-ranked nodes kept in float
    trials: list[tuple[int, bool]] = field(default_factory=list)  # (nodes kept in float, met the budget), in order
    out_of_time: bool = False


def rank(errors: dict[str, float], candidates: Sequence[str]) -> list[str]:
    """Candidates worst first; those without a measured error (unreachable by the probe) go last, in graph order."""
    measured = sorted((n for n in candidates if n in errors), key=lambda n: -errors[n])
    return measured + [n for n in candidates if n not in errors]


def rank_by_flips(flips: dict[str, float], errors: dict[str, float], candidates: Sequence[str]) -> list[str]:
    """Candidates by the labels each changes alone (:mod:`.node_flips`), most first; ties by their own error."""
    return sorted(candidates, key=lambda n: (-flips.get(n, 0.0), -errors.get(n, 0.0)))


def quantize_back(
    kept: Sequence[str],
    meets_budget: Callable[[list[str]], bool],
    seconds: float,
    log: Callable[[str], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[str], list[tuple[int, bool]]]:
    """(``kept`` less every node that can go back to INT8 on its own, trials): one at a time, the last-ranked first.

    The prefix search assumes that keeping more nodes in float never hurts; the labels say otherwise
    (quantization errors partly cancel, docs/foreign.md), so some nodes of the prefix are not needed.
    Each trial is a real model against the budget, like the search's; stops when ``seconds`` run out.
    """
    deadline = clock() + seconds
    kept, trials = list(kept), []
    for node in reversed(list(kept)):
        if clock() >= deadline:
            break
        trial = [k for k in kept if k != node]
        ok = meets_budget(trial)
        trials.append((len(trial), ok))
        if ok:
            kept = trial
            log(f"search: {node} back in INT8, {len(kept)} nodes in float still meet the budget")
    return kept, trials


def fewest_in_float(
    ranking: Sequence[str],
    meets_budget: Callable[[list[str]], bool],
    seconds: float,
    log: Callable[[str], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """The smallest prefix of ``ranking`` to keep in float so ``meets_budget`` passes (see the module docstring)."""
    deadline = clock() + seconds
    missed, met, step = 0, len(ranking), 1  # k = missed is known to miss, k = met to meet
    result = SearchResult([])
    while met - missed > 1:
        if clock() >= deadline:
            result.out_of_time = True
            break
        k = step if met == len(ranking) and step < met else (missed + met) // 2  # grow until a hit, then bisect
        ok = meets_budget(list(ranking[:k]))
        result.trials.append((k, ok))
        log(f"search: {k} of {len(ranking)} quantized nodes in float {'meets' if ok else 'misses'} the budget")
        if ok:
            met = k
        else:
            missed, step = k, 2 * k
    result.kept_float = list(ranking[:met])
    return result
