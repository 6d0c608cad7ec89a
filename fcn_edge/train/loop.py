"""The training loop, read top to bottom once like torchvision's references/segmentation/train.py.

``train`` is the main loop: build the model, loader and optimiser, resume if asked, then each
epoch ``train_one_epoch``, ``evaluate`` and ``save_epoch``. No framework, no callbacks.

A run resumed from last.pt after epoch k repeats epoch k+1 bit for bit (same seed, same
machine): last.pt keeps the optimiser, scheduler and GradScaler state, and every epoch draws
its randomness afresh from (seed, epoch), never from what earlier epochs left behind
(:func:`seed_epoch`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from ..boundary import BoundaryCounts
from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..errors import FcnEdgeError
from ..metrics import Scores, confusion_matrix, scores_from_confusion
from ..models import ModelConfig, build_model
from ..models.preprocess import frames_to_tensor, images_to_tensor
from ..models.weights import load_pretrained_backbone, load_state_strict
from ..spec import Preprocess
from .distributed import DistContext, any_rank, barrier, sync_buffers
from .losses import build_loss, median_frequency_weights

# What last.pt keeps beyond best.pt, and what an exact resume needs.
RESUME_STATE = ("optimizer", "scheduler", "scaler")


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 4e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    poly_power: float = 0.9
    loss: str = "ce"
    class_weights: bool = False
    seed: int = 0
    workers: int = 0
    amp: bool = True  # only takes effect on CUDA
    max_minutes: float | None = None  # stop after the epoch that crosses this wall-clock budget

    def __post_init__(self) -> None:
        """Reject a value here, before data and model are built, not minutes into a run."""
        checks = (
            ("epochs", self.epochs, self.epochs >= 1, "train for at least 1 epoch"),
            ("batch-size", self.batch_size, self.batch_size >= 1, "use at least 1"),
            ("lr", self.lr, math.isfinite(self.lr) and self.lr > 0, "use a positive learning rate such as 4e-3"),
            ("weight-decay", self.weight_decay, math.isfinite(self.weight_decay) and self.weight_decay >= 0, "use 0 or more"),
            ("seed", self.seed, self.seed >= 0, "use 0 or more"),
            ("workers", self.workers, self.workers >= 0, "use 0 (load in the main process) or more"),
            (
                "max-minutes",
                self.max_minutes,
                self.max_minutes is None or self.max_minutes > 0,
                "use a positive budget or leave it out",
            ),
        )
        for flag, value, ok, fix in checks:
            if not ok:
                raise FcnEdgeError(f"--{flag} {value} is out of range: {fix}")


def collate(samples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training crops (all one size) -> (uint8 NHWC frames, int64 N x H x W labels)."""
    images, masks = zip(*samples)
    frames = torch.from_numpy(np.stack(images))
    labels = torch.from_numpy(np.stack(masks).astype(np.int64))
    return frames, labels


def build_loader(train_set: Dataset, config: TrainConfig, context: DistContext) -> DataLoader:
    """Shuffled batches of random crops; its generator is reseeded every epoch by :func:`seed_epoch`."""
    sampler = (
        DistributedSampler(train_set, context.world_size, context.rank, shuffle=True, seed=config.seed)
        if context.enabled
        else None
    )
    loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=torch.Generator(),
        num_workers=config.workers,
        collate_fn=collate,
        drop_last=True,
    )
    if len(loader) == 0:
        raise FcnEdgeError(
            f"training set has {len(train_set)} samples, fewer than one batch of {config.batch_size}: lower --batch-size"
        )
    return loader


def seed_epoch(loader: DataLoader, seed: int, epoch: int, rank: int) -> None:
    """Seed everything random in an epoch from (seed, epoch, rank) alone.

    The loader's generator decides the shuffle and the data workers' seeds (each worker seeds
    its torch RNG from it, and augmentations draw from torch's RNG, see data/transforms.py);
    torch's global RNG drives augmentation when workers=0, and dropout. So epoch k+1 is the
    same whether or not epochs 0..k ran in this process, and no RNG state needs saving.
    """
    epoch_seed = int(np.random.SeedSequence((seed, epoch, rank)).generate_state(1)[0])
    torch.manual_seed(epoch_seed)
    loader.generator.manual_seed(epoch_seed)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise FcnEdgeError(f"unknown optimizer {config.optimizer!r}: choose sgd or adamw")


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Poly decay per step over the whole run."""
    total = config.epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - min(step, total - 1) / total) ** config.poly_power)


def make_criterion(
    config: TrainConfig,
    train_set: Dataset,
    classes: list[str],
    device: torch.device,
    show_progress: bool,
    log: Callable[[str], None],
) -> nn.Module:
    weight = None
    if config.class_weights:
        masks = (train_set[i][1] for i in tqdm(range(len(train_set)), desc="class weights", disable=not show_progress))
        weight = median_frequency_weights(masks, len(classes)).to(device)
        log("class weights: " + ", ".join(f"{c}={w:.2f}" for c, w in zip(classes, weight.tolist())))
    return build_loss(config.loss, weight).to(device)


def load_resume_state(path: Path) -> Checkpoint:
    """The checkpoint to continue from; only a run's last.pt keeps the training state."""
    checkpoint = load_checkpoint(path)
    missing = [key for key in RESUME_STATE if key not in checkpoint.training]
    if missing:
        raise FcnEdgeError(
            f"cannot resume from {path}: it has no {' or '.join(missing)} state (best.pt keeps only weights): "
            f"resume from last.pt in the same folder"
        )
    return checkpoint


def train_one_epoch(
    net: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    loader: DataLoader,
    preprocess: Preprocess,
    device: torch.device,
    description: str,
    show_progress: bool,
    teacher: nn.Module | None = None,
) -> float:
    """One pass over the loader; returns the mean loss. With a ``teacher``, ``criterion`` compares the scores with
    the teacher's scores of the same inputs instead of with the labels (distillation, :mod:`fcn_edge.train.qat`)."""
    net.train()
    running = 0.0
    bar = tqdm(loader, desc=description, leave=False, disable=not show_progress)
    for frames, labels in bar:
        inputs = frames_to_tensor(preprocess, frames).to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=scaler.is_enabled()):
            if teacher is not None:
                with torch.no_grad():
                    labels = teacher(inputs)
            loss = criterion(net(inputs), labels)
        if not math.isfinite(loss.item()):
            raise FcnEdgeError(f"loss became {loss.item()} in {description}: lower --lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        running += loss.item()
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return running / len(loader)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    preprocess: Preprocess,
    num_classes: int,
    device: torch.device,
    progress: bool = True,
    boundary: BoundaryCounts | None = None,
    post: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Scores:
    """Score every image at its own full size, one image at a time.

    Batch 1 is the honest number: nothing is resized or padded to match a neighbour
    (resizing a mask changes the labels being scored; padding changes what border pixels
    see), datasets of mixed image sizes such as VOC need nothing special, and it is how the
    deployed model sees frames. ``boundary`` is filled with the boundary counts as well;
    ``post`` (BGR image, K x H x W scores -> labels) replaces ArgMax, e.g. a dense CRF.
    """
    model.eval()
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for i in tqdm(range(len(dataset)), desc="eval", leave=False, disable=not progress):
        image, mask = dataset[i]
        logits = model(images_to_tensor(preprocess, image).to(device))
        labels = post(image, logits[0].cpu().numpy()) if post else logits[0].argmax(0).cpu().numpy()
        matrix += confusion_matrix(mask, labels, num_classes)
        if boundary is not None:
            boundary.add(mask, labels)
    return scores_from_confusion(matrix)


def save_epoch(out_dir: Path, model: nn.Module, training: dict[str, Any], improved: bool, **meta: Any) -> None:
    """last.pt keeps what a resume needs; best.pt only the weights and their record."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out_dir / "last.pt", model, training=training, **meta)
    if improved:
        record = {k: v for k, v in training.items() if k not in RESUME_STATE}
        save_checkpoint(out_dir / "best.pt", model, training=record, **meta)


def train(
    model_config: ModelConfig,
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset,
    classes: list[str],
    palette: list[tuple[int, int, int]],
    out_dir: Path,
    preprocess: Preprocess = Preprocess(),
    context: DistContext = DistContext(),
    device: torch.device = torch.device("cpu"),
    pretrained_backbone: Path | None = None,
    resume: Path | None = None,
    log: Callable[[str], None] = print,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, evaluate every epoch, keep best.pt and last.pt in ``out_dir``.

    ``data`` is the dataset record (:mod:`fcn_edge.data.record`); checkpoints keep it so that
    evaluate and build use the same splits by default. A run that validates on its training
    images (``val_on_train``) logs its figure as "train mIoU", never "val".

    Returns a summary with the final (unwrapped) ``model``, ``best_miou``, ``minutes`` and ``history``.
    """
    torch.manual_seed(config.seed)
    model = build_model(model_config).to(device)
    if pretrained_backbone is not None:
        load_pretrained_backbone(model.backbone, pretrained_backbone)
    loader = build_loader(train_set, config, context)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, len(loader))
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")
    start_epoch, best_miou, history = 0, -1.0, []
    if resume is not None:
        state = load_resume_state(resume)
        load_state_strict(model, state.state_dict, f"checkpoint {resume}")
        optimizer.load_state_dict(state.training["optimizer"])
        scheduler.load_state_dict(state.training["scheduler"])
        if state.training["scaler"]:  # empty when written by a run without AMP (CPU)
            scaler.load_state_dict(state.training["scaler"])
        start_epoch = int(state.training["epoch"]) + 1
        best_miou = float(state.training.get("best_miou", -1.0))
        history = list(state.training.get("history", []))
        log(f"resumed from {resume} at epoch {start_epoch}")
    criterion = make_criterion(config, train_set, classes, device, context.is_main, log)
    net = DistributedDataParallel(model) if context.enabled else model
    meta = dict(config=model_config, classes=classes, palette=palette, preprocess=preprocess)
    score_name = "train" if (data or {}).get("val_on_train") else "val"
    started = time.monotonic()

    for epoch in range(start_epoch, config.epochs):
        seed_epoch(loader, config.seed, epoch, context.rank)
        loss = train_one_epoch(
            net,
            criterion,
            optimizer,
            scheduler,
            scaler,
            loader,
            preprocess,
            device,
            f"epoch {epoch + 1}/{config.epochs}",
            context.is_main,
        )
        sync_buffers(model, context)
        elapsed = time.monotonic() - started
        if context.is_main:
            scores = evaluate(model, val_set, preprocess, model_config.num_classes, device)
            history.append({"epoch": epoch, "loss": loss, "miou": scores.miou, "minutes": elapsed / 60})
            improved = scores.miou > best_miou
            best_miou = max(best_miou, scores.miou)
            training = {
                "epoch": epoch,
                "best_miou": best_miou,
                "history": history,
                "train_config": asdict(config),
                "data": data or {},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
            }
            save_epoch(out_dir, model, training, improved, **meta)
            log(
                f"epoch {epoch + 1:3d}/{config.epochs}  loss {loss:.4f}  "
                f"{score_name} mIoU {scores.miou:.4f}  pixel acc {scores.pixel_accuracy:.4f}  "
                f"{elapsed / 60:.1f} min{'  *best' if improved else ''}"
            )
        barrier(context)
        if any_rank(config.max_minutes is not None and elapsed / 60 >= config.max_minutes, context):
            log(f"stopping after epoch {epoch + 1}: time budget of {config.max_minutes} min reached")
            break
    return {"model": model, "best_miou": best_miou, "minutes": (time.monotonic() - started) / 60, "history": history}
