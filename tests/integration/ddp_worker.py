"""Worker for the torchrun test: trains one short epoch and saves this rank's final weights."""

import sys
from pathlib import Path

import torch

from fcn_edge.data.synthetic import CLASSES, HELDOUT_SEED, PALETTE, SyntheticScenes
from fcn_edge.data.transforms import eval_transforms, train_transforms
from fcn_edge.models import ModelConfig
from fcn_edge.train.distributed import init_distributed, shutdown
from fcn_edge.train.loop import TrainConfig, train

out = Path(sys.argv[1])
torch.set_num_threads(1)
context = init_distributed(torch.device("cpu"))
result = train(
    ModelConfig(num_classes=len(CLASSES)),
    TrainConfig(epochs=1, batch_size=4, lr=1e-3),
    SyntheticScenes(32, 0, (64, 64), train_transforms((64, 64), scale=(0.75, 1.25))),
    SyntheticScenes(4, HELDOUT_SEED, (64, 64), eval_transforms()),
    CLASSES,
    PALETTE,
    out,
    context=context,
)
torch.save(result["model"].state_dict(), out / f"rank{context.rank}.pt")
shutdown(context)
