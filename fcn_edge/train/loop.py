"""The training loop: read top to bottom once, no framework, no callbacks."""

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

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import FcnEdgeError
from ..models import ModelConfig, build_model
from ..models.weights import load_pretrained_backbone, load_state_strict
from ..preprocess import Preprocess
from .distributed import DistContext, any_rank, barrier, sync_buffers
from .losses import build_loss, median_frequency_weights
from .metrics import Scores, confusion_matrix, scores_from_confusion


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


def collate(samples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch of (BGR uint8 image, uint8 mask) -> (uint8 NHWC frames, int64 N x H x W labels)."""
    images, masks = zip(*samples)
    frames = torch.from_numpy(np.stack(images))
    labels = torch.from_numpy(np.stack(masks).astype(np.int64))
    return frames, labels


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise FcnEdgeError(f"unknown optimizer {config.optimizer!r}: choose sgd or adamw")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    preprocess: Preprocess,
    num_classes: int,
    device: torch.device,
    batch_size: int = 8,
    progress: bool = True,
) -> Scores:
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for frames, labels in tqdm(loader, desc="eval", leave=False, disable=not progress):
        logits = model(preprocess.frames_to_tensor(frames).to(device))
        matrix += confusion_matrix(labels, logits.argmax(1).cpu(), num_classes)
    return scores_from_confusion(matrix)


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
) -> dict[str, Any]:
    """Train, evaluate every epoch, keep best.pt and last.pt in ``out_dir``.

    Returns a summary with the final (unwrapped) ``model``, ``best_miou``, ``minutes`` and ``history``.
    """
    torch.manual_seed(config.seed + context.rank)
    model = build_model(model_config).to(device)
    if pretrained_backbone is not None:
        load_pretrained_backbone(model.backbone, pretrained_backbone)
    optimizer = make_optimizer(model, config)
    start_epoch, best_miou, history = 0, -1.0, []
    if resume is not None:
        state = load_checkpoint(resume)
        load_state_strict(model, state.state_dict, f"checkpoint {resume}")
        optimizer.load_state_dict(state.training["optimizer"])
        start_epoch = int(state.training["epoch"]) + 1
        best_miou = float(state.training.get("best_miou", -1.0))
        history = list(state.training.get("history", []))
        log(f"resumed from {resume} at epoch {start_epoch}")

    weight = None
    if config.class_weights:
        masks = (train_set[i][1] for i in tqdm(range(len(train_set)), desc="class weights", disable=not context.is_main))
        weight = median_frequency_weights(masks, model_config.num_classes).to(device)
        log("class weights: " + ", ".join(f"{c}={w:.2f}" for c, w in zip(classes, weight.tolist())))
    criterion = build_loss(config.loss, weight).to(device)

    sampler = DistributedSampler(train_set, context.world_size, context.rank, shuffle=True, seed=config.seed) if context.enabled else None
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator if sampler is None else None,
        num_workers=config.workers,
        collate_fn=collate,
        drop_last=True,
    )
    if len(loader) == 0:
        raise FcnEdgeError(f"training set has {len(train_set)} samples, fewer than one batch of {config.batch_size}: lower --batch-size")
    total_steps = config.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (1 - min(step, total_steps - 1) / total_steps) ** config.poly_power
    )
    for _ in range(start_epoch * len(loader)):
        scheduler.step()
    net = DistributedDataParallel(model) if context.enabled else model
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    started = time.monotonic()

    for epoch in range(start_epoch, config.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        running = 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not context.is_main)
        for frames, labels in bar:
            inputs = preprocess.frames_to_tensor(frames).to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = criterion(net(inputs), labels)
            if not math.isfinite(loss.item()):
                raise FcnEdgeError(f"loss became {loss.item()} at epoch {epoch + 1}: lower --lr")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            running += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        sync_buffers(model, context)
        elapsed = time.monotonic() - started
        if context.is_main:
            scores = evaluate(model, val_set, preprocess, model_config.num_classes, device)
            history.append({"epoch": epoch, "loss": running / len(loader), "miou": scores.miou, "minutes": elapsed / 60})
            improved = scores.miou > best_miou
            best_miou = max(best_miou, scores.miou)
            training = {
                "epoch": epoch,
                "best_miou": best_miou,
                "history": history,
                "optimizer": optimizer.state_dict(),
                "train_config": asdict(config),
            }
            meta = dict(config=model_config, classes=classes, palette=palette, preprocess=preprocess)
            save_checkpoint(out_dir / "last.pt", model, training=training, **meta)
            if improved:
                save_checkpoint(out_dir / "best.pt", model, training={k: v for k, v in training.items() if k != "optimizer"}, **meta)
            log(
                f"epoch {epoch + 1:3d}/{config.epochs}  loss {running / len(loader):.4f}  "
                f"val mIoU {scores.miou:.4f}  pixel acc {scores.pixel_accuracy:.4f}  "
                f"{elapsed / 60:.1f} min{'  *best' if improved else ''}"
            )
        barrier(context)
        if any_rank(config.max_minutes is not None and elapsed / 60 >= config.max_minutes, context):
            log(f"stopping after epoch {epoch + 1}: time budget of {config.max_minutes} min reached")
            break
    return {"model": model, "best_miou": best_miou, "minutes": (time.monotonic() - started) / 60, "history": history}
