"""Data-parallel training inside one job: one process per GPU (or per CPU slot), rank 0 the only writer.

A job runs distributed when torchrun started it (RANK and WORLD_SIZE in the environment) or when
submitit did with several tasks (SLURM `nodes` x `tasks_per_node`, the local launcher's
`tasks_per_job`). Every rank runs the same job. A training step draws the *global* batch indices
and noise from the shared seed, and each rank keeps its slice (`Dist.shard`), so the gradient
DDP averages is the gradient one process computes on that global batch. Stage folders,
checkpoints, latents, MLflow, the JSON-lines mirror and progress are written by rank 0 alone;
the other ranks wait at a barrier while it evaluates.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")
# Barriers wait while rank 0 alone evaluates (latents, metrics, sampling), which can take hours at
# scale; a dead rank still ends them at once (gloo sees its sockets close, srun/torchrun kill the rest).
CONTROL_TIMEOUT = datetime.timedelta(hours=12)
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)  # a training step's all-reduce


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; the default is a job of one process, where every call is a no-op."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    control: Any = field(default=None, compare=False)  # a gloo group for barriers and broadcasts

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, *global_draws: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's slice of tensors drawn for the whole global batch (dimension 0).

        Afterwards each rank > 0 moves to its own random stream (seeded by rank), so what a step
        draws per sample after this point (dropout masks, MCR directions) differs between ranks.
        """
        if self.world == 1:
            return global_draws
        n = global_draws[0].shape[0]
        if n % self.world:
            raise ValueError(f"a global batch of {n} does not split over {self.world} processes: "
                             f"make the batch size a multiple of the number of processes per job")
        if self.rank:
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()) + self.rank)
        return tuple(t.tensor_split(self.world)[self.rank] for t in global_draws)

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP around `module` when there are several processes: its forward averages the gradients."""
        if self.world == 1:
            return module
        device = module_device(module)
        device_ids = [device.index] if device.type == "cuda" else None
        # buffers start identical (synced at init) and are never rank-local: no per-step broadcast
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of per-rank numbers (a loss over each rank's shard -> over the global batch)."""
        if self.world == 1 or not values:
            return values
        keys = sorted(values)
        vec = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(vec, group=self.control)
        return {k: float(v) / self.world for k, v in zip(keys, vec.tolist())}

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (a stop request seen by one rank stops all)."""
        if self.world == 1:
            return flag
        vec = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(vec, group=self.control)
        return bool(vec.item())

    def from_main(self, fn: Callable[[], T]) -> T:
        """Rank 0 computes, every rank gets its answer; the others wait until it has."""
        box = [fn() if self.is_main else None]
        if self.world > 1:
            dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier(group=self.control)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = Dist()


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def environment() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) of a multi-process job, from torchrun or submitit; None for one process."""
    env = os.environ
    if int(env.get("WORLD_SIZE", "1")) > 1 and "RANK" in env:  # torchrun (or an already exported submitit job)
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
    import submitit

    try:
        job = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job
        return None
    if job.num_tasks <= 1:
        return None
    found = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return found.rank, found.world_size, found.local_rank


def init(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the job's process group (NCCL on GPUs, gloo on the CPU); the device this rank trains on."""
    found = environment()
    if found is None:
        return SINGLE, device
    rank, world, local_rank = found
    if device.type == "cuda":
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world,
                                timeout=COLLECTIVE_TIMEOUT)
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return Dist(rank, world, local_rank, control), device
