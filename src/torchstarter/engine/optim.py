"""Optimizer and learning-rate scheduler from params."""

from __future__ import annotations

import math
from typing import Any

import torch

from torchstarter.config import Params


def build_optimizer(params: Params, model: torch.nn.Module,
                    groups: list[dict[str, Any]] | None = None) -> torch.optim.Optimizer:
    """The optimizer params name; over `groups` (a task's parameter groups, whose own
    settings win over params') or else every trainable parameter."""
    trainable = groups if groups is not None else \
        [p for p in model.parameters() if p.requires_grad]
    lr, wd = params.learning_rate, params.weight_decay
    if params.optimizer == "sgd":
        return torch.optim.SGD(trainable, lr=lr, momentum=params.momentum, weight_decay=wd)
    cls = torch.optim.AdamW if params.optimizer == "adamw" else torch.optim.Adam
    # The fused kernel is the same algorithm in one pass over each tensor: 4x faster NER
    # steps at batch 5 on 2 CPU cores, where the 1.5M-weight embedding dominates.
    return cls(trainable, lr=lr, weight_decay=wd, fused=True)


# Keys whose change would make a restored optimizer or scheduler state mean something else.
RESUME_FIXED_KEYS = ("optimizer", "learning_rate", "weight_decay", "momentum", "scheduler",
                     "step_size", "gamma", "plateau_patience", "metric", "metric_mode")


def extend_schedule(scheduler, num_epochs: int) -> None:
    """After a restore with more epochs, let a cosine schedule run to the new end."""
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and \
            scheduler.T_max != num_epochs:
        scheduler.T_max = num_epochs
        # Put the lr where the closed form says it is at this epoch of the longer schedule;
        # the scheduler's recursive update then carries on from there.
        progress = (1 + math.cos(math.pi * scheduler.last_epoch / num_epochs)) / 2
        for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs,
                               strict=True):
            group["lr"] = scheduler.eta_min + (base - scheduler.eta_min) * progress
        scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def build_scheduler(params: Params, optimizer: torch.optim.Optimizer, mode: str):
    """Return a scheduler stepped once per epoch, or None."""
    kind = params.scheduler
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, params.step_size, params.gamma)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=params.num_epochs)
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=params.gamma, patience=params.plateau_patience)
    return None
