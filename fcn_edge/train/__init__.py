"""Training: losses, the loop and torch.distributed set-up."""
