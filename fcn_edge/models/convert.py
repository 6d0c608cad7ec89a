"""Model-level pass: replace every transposed-conv upsampler of an FCN by resize + 3x3 conv.

Why: resize + conv has no checkerboard artifacts (Odena et al., Distill 2016), exports to a
plain Resize + Conv that every edge runtime quantizes and fuses, and lets a user keep a
model trained with ``deconv`` instead of training again. No labels are needed:

1. the student (``upsample="resize_conv"``) takes every shared weight by key;
2. each 3x3 conv is fitted by least squares so that ``conv(resize(x))`` matches the
   teacher's ``deconv(x)`` on the deconv's real inputs (hooked on a few images);
3. a short distillation on unlabelled images repairs what a shift-invariant 3x3 conv
   cannot express (a deconv's response may differ per output phase) and the interplay
   of the upsamplers, which step 2 fits one at a time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Iterable, Iterator

import torch
from torch.nn import functional as F
from tqdm import tqdm

from ..errors import FcnEdgeError
from .fcn import FCN, ModelConfig, build_model
from .upsample import DeconvUpsample, ResizeConvUpsample

MAX_LSTSQ_ROWS = 200_000  # output pixels sampled per layer: plenty for 9C+1 unknowns, bounded memory
TEMPERATURE = 2.0


@dataclass
class ConversionReport:
    """What the pass did and cost, stored in the converted checkpoint's ``training``."""

    residuals: dict[str, float]  # upsampler name -> ||conv(resize(x)) - deconv(x)|| / ||deconv(x)||
    agreement_before: float  # share of pixels where student and teacher pick the same label
    agreement_after: float
    steps: int
    loss: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def resize_conv_config(config: ModelConfig, resize_mode: str, source: str = "model") -> ModelConfig:
    """The student's config; only a deconv model has anything to convert."""
    if config.upsample != "deconv":
        raise FcnEdgeError(f"{source} already uses {config.upsample} upsampling: nothing to convert, use it as it is")
    return replace(config, upsample="resize_conv", resize_mode=resize_mode)


def upsampler_pairs(teacher: FCN, student: FCN) -> list[tuple[str, DeconvUpsample, ResizeConvUpsample]]:
    """(name, teacher deconv, student resize+conv) for every upsampler, matched by module name."""
    students = dict(student.named_modules())
    pairs = [(name, module, students[name]) for name, module in teacher.named_modules() if isinstance(module, DeconvUpsample)]
    assert all(isinstance(s, ResizeConvUpsample) and s.factor == d.factor for _, d, s in pairs), "architectures diverge"
    return pairs


def build_student(teacher: FCN, resize_mode: str) -> FCN:
    """A resize_conv FCN holding all of the teacher's weights except the upsamplers'."""
    student = build_model(resize_conv_config(teacher.config, resize_mode))
    prefixes = tuple(f"{name}." for name, _, _ in upsampler_pairs(teacher, student))
    source = teacher.state_dict()
    shared = {k: v for k, v in student.state_dict().items() if not k.startswith(prefixes)}
    assert set(shared) == {k for k in source if not k.startswith(prefixes)}, "shared keys differ"
    student.load_state_dict({k: source[k] for k in shared}, strict=False)
    return student.eval()


@torch.no_grad()
def capture_upsampler_inputs(teacher: FCN, images: Iterable[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """Run the teacher and keep what each deconv receives: the real inputs to fit against."""
    captured: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, module in teacher.named_modules():
        if isinstance(module, DeconvUpsample):
            captured[name] = []
            hooks.append(module.register_forward_hook(lambda m, args, out, n=name: captured[n].append(args[0].detach())))
    try:
        for batch in images:
            teacher(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


@torch.no_grad()
def fit_resize_conv(deconv: DeconvUpsample, target: ResizeConvUpsample, inputs: list[torch.Tensor], seed: int = 0) -> float:
    """Least-squares fit of ``target.conv`` to ``deconv`` on ``inputs``; returns the relative residual.

    Each output pixel is one equation: its 3x3 x C patch of ``resize(x)`` (plus 1 for the
    bias) times the unknown weights must equal ``deconv(x)`` at that pixel, for all C
    output channels at once. Rows are subsampled to ``MAX_LSTSQ_ROWS``; solved in float64.
    """
    channels = deconv.in_channels
    patches, outputs = [], []
    for x in inputs:
        resized = F.interpolate(x, scale_factor=target.factor, mode=target.mode,
                                align_corners=False if target.mode == "bilinear" else None)
        patches.append(F.unfold(resized, 3, padding=1).transpose(1, 2).reshape(-1, channels * 9))
        outputs.append(deconv(x).flatten(2).transpose(1, 2).reshape(-1, channels))
    a, b = torch.cat(patches).double(), torch.cat(outputs).double()
    if len(a) > MAX_LSTSQ_ROWS:
        keep = torch.randperm(len(a), generator=torch.Generator().manual_seed(seed))[:MAX_LSTSQ_ROWS]
        a, b = a[keep], b[keep]
    a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)
    solution = torch.linalg.lstsq(a, b, driver="gelsd").solution  # (9C + 1) x C
    target.conv.weight.copy_(solution[:-1].T.reshape(channels, channels, 3, 3).float())
    target.conv.bias.copy_(solution[-1].float())
    return float(torch.linalg.norm(a @ solution - b) / torch.linalg.norm(b).clamp_min(1e-12))


@torch.no_grad()
def label_agreement(teacher: FCN, student: FCN, images: Iterable[torch.Tensor]) -> float:
    """Share of pixels on which the two models' argmax labels agree."""
    same = total = 0
    for batch in images:
        same += int((teacher(batch).argmax(1) == student(batch).argmax(1)).sum())
        total += batch.shape[0] * batch.shape[2] * batch.shape[3]
    return same / max(total, 1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Per-pixel KL(teacher || student) of temperature-softened softmaxes, times T^2 (Hinton et al., 2015).

    KL and not logit MSE: a label depends only on logit differences, and KL ignores each
    pixel's common offset and spends its gradient on pixels where the teacher is unsure,
    i.e. on the class boundaries where labels flip; T > 1 keeps the ranking of the other
    classes informative. T^2 keeps gradient size independent of T.
    """
    log_student = F.log_softmax(student_logits / temperature, 1)
    log_teacher = F.log_softmax(teacher_logits / temperature, 1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(1)
    return kl.mean() * temperature**2


def distill(
    teacher: FCN, student: FCN, batches: Iterator[torch.Tensor], steps: int, lr: float = 3e-4, progress: bool = True
) -> float:
    """Fine-tune the whole student to the teacher's logits; returns the mean loss of the last 10% of steps.

    Both stay in eval mode: the student must reproduce the function the teacher computes
    at inference, so BatchNorm keeps the statistics learned on the full training set (a few
    hundred unlabelled images must not shift them) and dropout stays off.
    """
    teacher.eval()
    student.eval()
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / max(steps, 1))
    tail = []
    bar = tqdm(range(steps), desc="distil", leave=False, disable=not progress)
    for step in bar:
        batch = next(batches)
        with torch.no_grad():
            target = teacher(batch)
        loss = distillation_loss(student(batch), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step >= steps - max(steps // 10, 1):
            tail.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return sum(tail) / len(tail) if tail else float("nan")


def convert(
    teacher: FCN,
    resize_mode: str,
    calibration: list[torch.Tensor],
    train_batches: Iterator[torch.Tensor],
    eval_batches: list[torch.Tensor],
    steps: int,
    lr: float = 3e-4,
    progress: bool = True,
) -> tuple[FCN, ConversionReport]:
    """Teacher (deconv) -> student (resize_conv): copy, least-squares fit, distil, measure."""
    started = time.monotonic()
    teacher.eval()
    student = build_student(teacher, resize_mode)
    inputs = capture_upsampler_inputs(teacher, calibration)
    residuals = {name: fit_resize_conv(deconv, target, inputs[name]) for name, deconv, target in upsampler_pairs(teacher, student)}
    before = label_agreement(teacher, student, eval_batches)
    if steps > 0:
        distill(teacher, student, train_batches, steps, lr, progress)
    after = label_agreement(teacher, student, eval_batches) if steps > 0 else before
    report = ConversionReport(residuals, before, after, steps, f"KL, T={TEMPERATURE:g}", time.monotonic() - started)
    return student.eval(), report
