"""Training loop, schedules, batches, checkpoints and torch.distributed helpers."""
