"""No module imports a higher layer: the order is docs/architecture.md's table, read here, so the page
and the rule cannot drift apart."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT
from test_import_graph import import_graph

DOC = ROOT / "docs" / "architecture.md"


def layers() -> dict[str, int]:
    """Package (or top-level module) -> layer, from the block under the page's layer-order marker."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- layer order:", 1)[1].split("```", 2)[1]
    order = {}
    for line in block.splitlines():
        if match := re.match(r"\s*(\d+)\s+(.+)", line):
            order.update({unit: int(match[1]) for unit in match[2].split()})
    return order


def unit(module: str) -> str:
    """``fcn_edge.backends.tensorrt.build`` -> ``backends``; the package itself -> ``fcn_edge``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward(graph: dict[str, set[str]], order: dict[str, int]) -> list[str]:
    return sorted(
        f"{module} ({unit(module)}, layer {order[unit(module)]}) imports {target} ({unit(target)}, layer {order[unit(target)]})"
        for module, targets in graph.items() if unit(module) != "fcn_edge"
        for target in targets if unit(target) != unit(module) and order[unit(target)] > order[unit(module)]
    )  # fmt: skip


def test_every_package_has_a_layer():
    missing = {unit(m) for m in import_graph()} - set(layers()) - {"fcn_edge"}
    assert not missing, f"give {sorted(missing)} a row in docs/architecture.md's layer table"


def test_no_module_imports_a_higher_layer():
    assert upward(import_graph(), layers()) == []


@pytest.mark.parametrize(
    "module, target",
    [("fcn_edge.models.resize_conv", "fcn_edge.train.loop"),  # the conversion workflow back in models/
     ("fcn_edge.models.resize_conv", "fcn_edge.checkpoint"),
     ("fcn_edge.backends.tensorrt.build", "fcn_edge.quantize.calibration"),  # the cache format back in quantize/
     ("fcn_edge.backends.tensorrt.selftest", "fcn_edge.data.synthetic")],
)  # fmt: skip
def test_the_upward_imports_that_were_removed_would_fail(module, target):
    graph = import_graph()
    graph[module] = graph[module] | {target}
    assert any(line.startswith(f"{module} ") and f"imports {target} " in line for line in upward(graph, layers()))
