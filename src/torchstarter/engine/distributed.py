"""Several processes, one run: the facts the engine needs when launched by torchrun.

`batch_size` stays the global batch: each step, the global batch is cut into one
shard per process, and each process scales its loss so that DDP's gradient average
equals the gradient of the global batch's mean loss, even when shards differ in size
or the loss is a mean over tokens. Metric sums are added over processes before the
division, so every number matches a one-process run on the same data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def shard(self, index: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """This process's part of a global batch, and whether it is only a placeholder.

        A global batch smaller than the number of processes leaves some of them without
        examples; they take the first example with a loss weight of zero, so every
        process still runs the same collective operations.
        """
        if not self.enabled:
            return index, False
        part = torch.tensor_split(index, self.world_size)[self.rank]
        return (index[:1], True) if len(part) == 0 else (part, False)


SINGLE = Distributed()


def from_environment() -> Distributed:
    """Join the process group torchrun describes in the environment; one process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return Distributed(rank, world_size, local_rank)


def shutdown(info: Distributed, finished: bool) -> None:
    """Leave the process group; after a normal end, only once every process got there
    (one that leaves early can abort a peer's transport threads mid-exchange)."""
    if info.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
