"""Training: losses, metrics, the loop and torch.distributed set-up."""
