"""Turning a split into batches in an order that is a function of (seed, epoch).

The kinds of split data, and the methods a split may offer, are the protocols of
engine/task.py:
- a BatchSource (TensorData, or a task's own class): a batch is one indexing operation
  on tensors already on the training device; batch_indices, iter_batches and to are
  used when the split has them;
- any torch Dataset of (inputs, label) pairs: read through a DataLoader with
  params.num_workers processes, in the same order.
Every example is used once per epoch; the last batch may be short, never dropped.
Batch indices are CPU tensors, so a task can read facts about a batch (such as its
longest sentence) on the host for free. TensorData and NER's TokenData send a pass's
indices to the device in one non-blocking copy and slice it per batch (iter_batches),
so no step copies anything from the host to the GPU or waits for it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from torchstarter.engine.rng import ORDER_STREAM, epoch_generator
from torchstarter.engine.task import (
    HOST_PREFIX,
    BatchSource,
    GroupedData,
    MovableData,
    StagedData,
)


class TensorData:
    """A split held as tensors: inputs[i] and labels[i] form example i."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = index.to(self.inputs.device, non_blocking=True)
        return self.inputs[index], self.labels[index]

    def iter_batches(self, groups: list[torch.Tensor]
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, index in staged_indices(groups, self.inputs.device):
            yield self.inputs[index], self.labels[index]

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    def to(self, device: torch.device) -> TensorData:
        if self.inputs.device == device and self.labels.device == device:
            return self
        return TensorData(self.inputs.to(device), self.labels.to(device))


def staged_indices(groups: list[torch.Tensor], device: torch.device
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Each group of indices on the host and on `device`, the latter all from one copy.

    One transfer per pass instead of one per batch: the per-batch device indices are
    views into it, so forming a batch launches no copy and never waits for the GPU.
    """
    if not groups:
        return
    on_device = torch.cat(groups).to(device, non_blocking=True)
    start = 0
    for group in groups:
        yield group, on_device[start:start + len(group)]
        start += len(group)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=epoch_generator(seed, epoch, ORDER_STREAM))


def to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: v if str(k).startswith(HOST_PREFIX) else to_device(v, device)
                for k, v in obj.items()}
    return obj


def batch_size_of(labels: Any) -> int:
    if isinstance(labels, torch.Tensor):
        return int(labels.shape[0])
    return len(labels)


def place(data: Any, device: torch.device) -> Any:
    """Move in-memory data to the device once, so no batch is copied per step."""
    if isinstance(data, BatchSource) and isinstance(data, MovableData):
        return data.to(device)
    return data


def batch_groups(data: Any, order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """The epoch's order cut into batches of indices (by the data's own rule if it has one)."""
    if isinstance(data, BatchSource) and isinstance(data, GroupedData):
        return list(data.batch_indices(order, batch_size))
    return list(torch.split(order, batch_size))


def _quiet_worker(_: int) -> None:
    """Workers leave Ctrl-C (and a scheduler's SIGUSR1) to the training process, which
    stops cleanly on its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def iterate_batches(data: BatchSource | Dataset, order: torch.Tensor, batch_size: int,
                    device: torch.device, num_workers: int = 0) -> Iterator[tuple[Any, Any]]:
    return iterate_groups(data, batch_groups(data, order, batch_size), device, num_workers)


def iterate_groups(data: BatchSource | Dataset, groups: list[torch.Tensor],
                   device: torch.device, num_workers: int = 0, skip: int = 0,
                   generator: torch.Generator | None = None) -> Iterator[tuple[Any, Any]]:
    """One batch per group of indices; the first `skip` groups are passed over unread.

    A DataLoader seeds its workers from `generator`; without one it would draw from the
    global generator, and a run resumed mid-epoch would then draw one number more than
    an unbroken run, shifting every later dropout mask.
    """
    if isinstance(data, BatchSource):
        rest = groups[skip:]
        batches = data.iter_batches(rest) if isinstance(data, StagedData) else \
            (data.get_batch(i) for i in rest)
        for inputs, labels in batches:
            yield to_device(inputs, device), to_device(labels, device)  # no-op when there
        return
    chunks = [g.tolist() for g in groups[skip:]]
    if not chunks:
        return
    loader = DataLoader(data, batch_sampler=chunks, num_workers=num_workers,
                        pin_memory=device.type == "cuda", worker_init_fn=_quiet_worker,
                        generator=generator or torch.Generator().manual_seed(0))
    for inputs, labels in loader:
        yield to_device(inputs, device), to_device(labels, device)
