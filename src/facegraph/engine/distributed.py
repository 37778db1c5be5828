"""Process-group helpers: a single process needs no set-up; `torchrun` sets WORLD_SIZE/RANK and we join it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun): which process reports to the user."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str = "auto") -> Context:
    """Join the torchrun process group when there is one (nccl on GPU, gloo on CPU) and pick the device."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(0, 1, torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


def teardown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    """Sum a tensor over ranks (a no-op in a single process)."""
    if context.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def broadcast_flag(flag: bool, context: Context) -> bool:
    """Rank 0's value of `flag` on every rank."""
    if not context.distributed:
        return flag
    value = torch.tensor([int(flag)])
    dist.broadcast(value, src=0)
    return bool(value.item())


def gather_objects(value: object, context: Context) -> list[object]:
    """Every rank's `value`, in rank order, on every rank."""
    if not context.distributed:
        return [value]
    values: list[object] = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values
