"""An exponential moving average of the weights, kept beside the model on its device.

Averaged weights often generalise better than the last step's. The copy is updated
after every optimizer step by one fused lerp over all parameters, with the decay worked
out on the host from the step count, so no step waits for the device. Buffers
(batch-norm running statistics) are not averaged: they are copied from the trained
model whenever the average is used, so they are always the statistics of the latest
weights (the choice torch.optim.swa_utils.AveragedModel makes by default).
"""

from __future__ import annotations

import copy
from typing import Any

import torch


class WeightAverage:
    """Holds `module`, a copy of the model whose parameters are the running average."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = False,
                 every: int = 1):
        self.decay, self.warmup, self.every = decay, warmup, every
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.updates = 0  # optimizer steps seen (averaged every `every` of them)
        self._params = [p for p in self.module.parameters()]
        self._sources: list[torch.Tensor] = []
        self.track(model)

    def track(self, model: torch.nn.Module) -> None:
        """Average `model`'s parameters (the same module the optimizer steps)."""
        self.model = model
        self._sources = [p.detach() for p in model.parameters()]  # same storage, no autograd

    def current_decay(self) -> float:
        """With warmup, early steps weigh more, so the average is not stuck at the start
        weights: decay = min(decay, (1 + n) / (10 + n)) after n updates."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """After an optimizer step. With every = N, one lerp each N steps with the decay of
        N steps, decay ** N: the same horizon for a N-th of the memory traffic."""
        self.updates += 1
        if self.updates % self.every:
            return
        weight = 1.0 - self.current_decay() ** self.every
        torch._foreach_lerp_(self._params, self._sources, weight)

    @torch.no_grad()
    def averaged(self) -> torch.nn.Module:
        """The averaged model with the trained model's current buffers, ready to evaluate."""
        for mine, theirs in zip(self.module.buffers(), self.model.buffers(), strict=True):
            mine.copy_(theirs)
        return self.module

    @torch.no_grad()
    def restart(self) -> None:
        """Start the average again from the model's current weights."""
        for mine, theirs in zip(self._params, self._sources, strict=True):
            mine.copy_(theirs)
        self.updates = 0

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "decay": self.decay, "warmup": self.warmup,
                "every": self.every}

    def load_state_dict(self, state: dict[str, Any], weights: dict[str, torch.Tensor]
                        ) -> None:
        self.module.load_state_dict(weights)
        self.updates = int(state["updates"])
