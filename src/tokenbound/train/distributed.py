"""torch.distributed helpers: one process per device under `torchrun`, a no-op world of one otherwise.

`torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `setup` reads them and joins the
process group (gloo on CPU, nccl on CUDA). Only rank 0 writes artifacts; the others wait at barriers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import TokenboundError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def setup(device: str = "cpu") -> World:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); pick this rank's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TokenboundError("CUDA is not available on this machine", param="device", value="cuda")
        if size > 1:  # one GPU per local rank
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(local_rank)
    elif device != "cpu":
        raise TokenboundError(f"expected cpu or cuda, got {device!r}", param="device")
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return World(rank=rank, size=size, local_rank=local_rank, device=device)


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def all_reduce_sum(world: World, values: list[float]) -> list[float]:
    """Sum a few floats across ranks (float64, on CPU for gloo or on the rank's device for nccl)."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_flag(world: World, flag: bool) -> bool:
    """Rank 0's decision (e.g. 'the time budget is spent'), agreed by every rank."""
    if not world.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=world.device)
    dist.broadcast(t, src=0)
    return bool(t.item())
