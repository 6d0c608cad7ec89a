"""Proof that an exported graph computes what PyTorch computes, on several sizes and a batch.

Tracing records one run; anything the model decided in Python (an ``int()`` of a shape, a
random draw, a branch) is frozen into the graph and only shows at another size. So each
export runs in ONNX Runtime on synthetic camera-like scenes at sizes unlike the traced one
(including one that is not a multiple of the output stride, and a batch of two) and is
compared with the same PyTorch module: largest absolute logit difference and the share of
pixels with the same label. Real-ish scenes rather than noise keep argmax ties, which can
flip a label on a 1e-7 difference, unlikely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

from ..data.synthetic import HELDOUT_SEED, render_scene
from ..models.preprocess import images_to_tensor
from ..spec import Preprocess

# (batch, height, width). Each has at least 10,000 pixels, so the 99.99% agreement limit allows
# one flipped near-tie instead of none; 105x141 is odd and not a multiple of the output stride.
DEFAULT_VERIFY_SIZES = ((2, 96, 128), (1, 105, 141), (1, 256, 320))


@dataclass(frozen=True)
class Tolerance:
    max_abs_diff: float = 1e-4  # per unit of the largest |logit| where that exceeds 1: float32 rounding grows with it
    min_agreement: float = 0.9999


@dataclass(frozen=True)
class SizeCheck:
    """Figures at one input size; ``None`` where the graph has no such output, ``problem`` when it did not run."""

    batch: int
    height: int
    width: int
    max_abs_diff: float | None = None
    agreement: float | None = None
    problem: str = ""
    logit_scale: float = 1.0  # the largest |logit| PyTorch gave, at least 1

    def passes(self, tolerance: Tolerance) -> bool:
        close = self.max_abs_diff is None or self.max_abs_diff <= tolerance.max_abs_diff * self.logit_scale
        return not self.problem and close and (self.agreement is None or self.agreement >= tolerance.min_agreement)

    def worst(self, other: "SizeCheck") -> "SizeCheck":
        """Combine the checks of two graphs of one export (with and without the logits output)."""

        def pick(a, b, choose):
            return b if a is None else a if b is None else choose(a, b)

        return SizeCheck(
            self.batch,
            self.height,
            self.width,
            pick(self.max_abs_diff, other.max_abs_diff, max),
            pick(self.agreement, other.agreement, min),
            "; ".join(dict.fromkeys(p for p in (*self.problem.split("; "), *other.problem.split("; ")) if p)),
            max(self.logit_scale, other.logit_scale),
        )

    def describe(self) -> str:
        parts = [f"{self.height}x{self.width} batch {self.batch}:"]
        if self.problem:
            parts.append(self.problem)
        if self.max_abs_diff is not None:
            parts.append(
                f"max |logit diff| {self.max_abs_diff:.2e}"
                + (f" (logits up to {self.logit_scale:.3g})" if self.logit_scale > 1 else "")
            )
        if self.agreement is not None:
            parts.append(f"label agreement {100 * self.agreement:.4f}%")
        return " ".join(parts)


Case = tuple[tuple[int, int, int], np.ndarray]  # (batch, height, width), the input batch


def verification_inputs(sizes, preprocess: Preprocess, input_format: str) -> list[Case]:
    """One batch per (batch, height, width): uint8 NHWC BGR frames, or them preprocessed for "tensor"."""
    batches = []
    for index, (batch, height, width) in enumerate(sizes):
        frames = np.stack(
            [render_scene(np.random.default_rng(HELDOUT_SEED + 100 * index + item), (height, width))[0] for item in range(batch)]
        )
        x = frames if input_format == "frame" else images_to_tensor(preprocess, frames).numpy()
        batches.append(((batch, height, width), x))
    return batches


def torch_outputs(module: torch.nn.Module, cases: list[Case]) -> list[dict[str, np.ndarray]]:
    """The reference: ``module`` (returning logits, labels) in PyTorch on each case."""
    references = []
    with torch.no_grad():
        for _, x in cases:
            logits, labels = module(torch.from_numpy(x))
            references.append({"logits": logits.numpy(), "labels": labels.numpy()})
    return references


def check_against_torch(model: onnx.ModelProto, cases: list[Case], references: list[dict[str, np.ndarray]]) -> list[SizeCheck]:
    """Run ``model`` on ONNX Runtime's CPU provider on each case and compare its outputs with ``references``."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    checks = []
    for ((batch, height, width), x), reference in zip(cases, references):
        try:
            got = dict(zip(names, session.run(None, {input_name: x})))
        except (Fail, InvalidArgument, RuntimeException) as error:
            checks.append(SizeCheck(batch, height, width, problem=f"ONNX Runtime failed ({str(error).splitlines()[0][:160]})"))
            continue
        wrong = [f"{n} shape {got[n].shape} vs PyTorch {reference[n].shape}" for n in got if got[n].shape != reference[n].shape]
        if wrong:
            checks.append(SizeCheck(batch, height, width, problem="; ".join(wrong)))
            continue
        diff = float(np.abs(got["logits"] - reference["logits"]).max()) if "logits" in got else None
        agreement = float((got["labels"] == reference["labels"]).mean()) if "labels" in got else None
        scale = max(1.0, float(np.abs(reference["logits"]).max()))
        checks.append(SizeCheck(batch, height, width, diff, agreement, logit_scale=scale))
    return checks
