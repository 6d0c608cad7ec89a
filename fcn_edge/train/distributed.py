"""torch.distributed set-up for runs started by ``torchrun`` (gloo on CPU, nccl on CUDA)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group when torchrun's environment is present; a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    context = DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(context.local_rank)
    return context


def sync_buffers(model: nn.Module, context: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers before each forward, so after the last step each rank still
    holds statistics from its own batch; this makes the saved and evaluated model identical.
    """
    if context.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()


def shutdown(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, context: DistContext) -> bool:
    """True on every rank when ``flag`` is true on any rank, so all ranks leave a loop together."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
