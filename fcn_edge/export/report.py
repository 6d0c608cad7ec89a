"""What an export did and what it proved, as figures for callers and a short table for people."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .lean import LeanReport
from .passes import PassReport
from .verify import SizeCheck, Tolerance


@dataclass
class ExportReport:
    output_path: Path
    source: str
    opset: int
    exporter: str
    inputs: list[str]  # "name dtype [dims]"
    outputs: list[str]
    nodes_before_slim: int
    nodes_after_slim: int
    convtranspose_remaining: int
    reasons: list[str]  # why each remaining ConvTranspose is still there
    graph_pass: PassReport | None  # None when graph passes were skipped
    checks: list[SizeCheck]  # per verification size
    tolerance: Tolerance
    seconds: float
    lean: LeanReport | None = None  # None when graph passes were skipped

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.checks)

    @property
    def min_agreement(self) -> float:
        return min(c.agreement for c in self.checks)

    def table(self) -> str:
        rows = [
            ("export", f"{self.source} -> {self.output_path} in {self.seconds:.1f} s"),
            ("exporter", f"{self.exporter}, opset {self.opset}"),
            ("inputs", ", ".join(self.inputs)),
            ("outputs", ", ".join(self.outputs)),
            ("nodes", f"{self.nodes_before_slim} before onnxslim, {self.nodes_after_slim} after"),
            ("ConvTranspose", f"{self.convtranspose_remaining} remaining (target 0)"),
        ]
        lines = [f"{label:<14}{value}" for label, value in rows]
        lines += [f"  {reason}" for reason in self.reasons]
        pass_lines = self.graph_pass.lines() if self.graph_pass else ["skipped (--no-graph-passes)"]
        lines += [f"{'graph pass':<14}{pass_lines[0]}", *pass_lines[1:]]
        if self.lean:
            lean_lines = self.lean.lines()
            lines += [f"{'graph pass':<14}{lean_lines[0]}", *lean_lines[1:]]
        lines.append(
            f"verification  ONNX Runtime CPU vs PyTorch; limits |logit diff| <= {self.tolerance.max_abs_diff:g}, "
            f"label agreement >= {100 * self.tolerance.min_agreement:g}%"
        )
        lines.append(f"  {'size':<10}{'batch':>6}{'max |logit diff|':>18}{'label agreement':>17}")
        for c in self.checks:
            lines.append(f"  {f'{c.height}x{c.width}':<10}{c.batch:>6}{c.max_abs_diff:>18.2e}{100 * c.agreement:>16.4f}%")
        return "\n".join(lines)
