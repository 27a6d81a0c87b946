"""Exact epoch metrics: sums of numerators and denominators, divided once at the end.

A task's Metric (engine/task.py) returns (numerator, denominator) for one batch, e.g.
(correct predictions, examples) for accuracy. Summing both over the epoch and dividing
once gives the exact per-example value; a mean of batch means would not. Totals stay
on the device as float64 tensors so the training loop never waits for a .item().
A denominator that sums to zero over the pass gives the metric's `if_empty` value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from torchstarter.engine.task import Metric


def as_float64(x: Any, device: torch.device) -> torch.Tensor:
    """A float64 scalar on `device`; a Python number is filled there, never copied over
    (a blocking host-to-GPU copy would wait for the GPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=torch.float64)
    return torch.full((), float(x), dtype=torch.float64, device=device)


def zero_when_empty(fn: Callable[[Any, Any], tuple[Any, Any]]) -> Metric:
    """Shorthand for Metric(fn, if_empty=0.0), usable as a decorator."""
    return Metric(fn, if_empty=0.0)


class MetricTotals:
    """Running sums for the loss and each metric over one pass of a split.

    A batch adds all its numbers at once: its tensors are stacked and added to the device
    sums in two kernels, and plain Python numbers (a batch size, say) are summed on the
    host, so adding costs a GPU step no more launches than it must.
    """

    def __init__(self, metrics: Mapping[str, Metric], device: torch.device,
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.metrics = dict(metrics)
        self.device = device
        self.reduce = reduce  # adds the sums of every process (distributed runs)
        # Row 0 is the loss; one row per metric after it. Columns: numerator, denominator.
        self.sums = torch.zeros(1 + len(self.metrics), 2, dtype=torch.float64, device=device)
        self.host = [0.0] * self.sums.numel()  # the Python numbers, in the same layout
        self._zero = torch.zeros((), dtype=torch.float64, device=device)
        self.examples = 0

    def add(self, loss: torch.Tensor, loss_count: Any, outputs: Any, labels: Any,
            examples: int) -> None:
        values = [loss_count]
        for metric in self.metrics.values():
            num, den = metric(outputs, labels)
            values += [num, den]
        slots = [self._slot(i, value) for i, value in enumerate(values, start=1)]
        # The loss is a mean over loss_count items: its numerator is loss x count.
        count = slots[0] if isinstance(loss_count, torch.Tensor) else float(loss_count)
        numerator = as_float64(loss, self.device) * count
        self.sums.view(-1).add_(torch.stack([numerator, *slots]))
        self.examples += examples

    def _slot(self, i: int, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value.detach().to(device=self.device, dtype=torch.float64)
        self.host[i] += float(value)
        return self._zero

    def _merged(self) -> torch.Tensor:
        """Device sums plus host sums (read once per pass, or when a pass is paused)."""
        if not any(self.host):
            return self.sums
        host = torch.tensor(self.host, dtype=torch.float64).view_as(self.sums)
        return self.sums + host.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """The sums so far, so an epoch interrupted mid-way resumes with exact metrics."""
        return {"sums": self._merged().cpu(), "examples": self.examples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["sums"].shape) != tuple(self.sums.shape):
            raise ValueError("metric totals from a task with other metrics")
        self.sums = state["sums"].to(device=self.device, dtype=torch.float64)
        self.host = [0.0] * self.sums.numel()
        self.examples = int(state["examples"])

    def reduced_state(self) -> dict[str, Any]:
        """state_dict() with the sums of every process added up (one checkpoint for all)."""
        examples = self._reduced_count()
        return {"sums": self._reduced().cpu(), "examples": examples}

    def _reduced_count(self) -> int:
        if self.reduce is None:
            return self.examples
        return int(self.reduce(as_float64(self.examples, self.device).view(1)).item())

    def _reduced(self) -> torch.Tensor:
        merged = self._merged()
        return self.reduce(merged.clone()) if self.reduce is not None else merged

    def running_loss(self) -> float:
        num, den = self._merged()[0].tolist()
        return num / den if den else float("nan")

    def compute(self) -> dict[str, float]:
        sums = self._reduced().tolist()
        empty = [float("nan")] + [metric.if_empty for metric in self.metrics.values()]
        names = ["loss", *self.metrics]
        return {name: (num / den if den else if_empty)
                for name, (num, den), if_empty in zip(names, sums, empty, strict=True)}
