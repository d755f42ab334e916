"""torch.distributed glue for scoring: under ``torchrun`` (RANK / WORLD_SIZE set) ranks split the shards.

Shard k goes to rank k mod W; ranks meet at a barrier, then rank 0 merges and writes. gloo on CPU, nccl on CUDA.
If this module started the process group it also ends it, so library callers need not know about it.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    rank: int
    world: int

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def owns(self, shard: int) -> bool:
        return shard % self.world == self.rank


def local_device(device: str) -> str:
    """'cuda' under torchrun means this process's GPU (LOCAL_RANK)."""
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


@contextlib.contextmanager
def process_group(device: str) -> Iterator[Group]:
    """The current group: an existing one, one started from the torchrun environment, or a single process."""
    if dist.is_available() and dist.is_initialized():
        yield Group(dist.get_rank(), dist.get_world_size())
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        yield Group(0, 1)
        return
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(local_device(device)))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield Group(dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()
