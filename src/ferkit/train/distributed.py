"""Device choice and DistributedDataParallel plumbing for the trainer.

`torchrun --nproc_per_node N -m ferkit train ...` starts N processes with RANK, WORLD_SIZE
and LOCAL_RANK in their environment. `setup()` reads them, joins the process group (NCCL
on GPUs, gloo on CPU) and picks this rank's device; without them training runs as a single
process and nothing here does anything. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ferkit.errors import ConfigError


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` → CUDA when available, else CPU; `cuda` under DDP → this rank's GPU."""
    preference = preference.strip().lower()
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {preference!r} asked for, but CUDA is not available")
        if preference == "cuda":
            preference = f"cuda:{local_rank}"
    try:
        return torch.device(preference)
    except RuntimeError:
        raise ConfigError(
            f"unknown device {preference!r}; expected auto, cpu, cuda or cuda:N"
        ) from None


@dataclass
class DistContext:
    """Where this process stands: its rank, the world size and its device."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # True when `setup()` created the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_preference: str) -> DistContext:
    """Join the process group when launched by torchrun (or one exists already)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistContext(device=resolve_device(device_preference))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return DistContext(
        device=device, rank=dist.get_rank(), world_size=dist.get_world_size(), owns_group=owns
    )


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of a few numbers over all ranks (identity in a single process)."""
    if not ctx.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_flag(flag: bool, ctx: DistContext) -> bool:
    """Rank 0's decision (e.g. stop early), so every rank leaves the loop together."""
    if not ctx.distributed:
        return flag
    tensor = torch.tensor([int(flag)], device=ctx.device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank.

    DDP syncs gradients, so the weights agree, but each rank updates its BatchNorm
    running statistics on its own last batch; after this every rank holds one model.
    """
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
