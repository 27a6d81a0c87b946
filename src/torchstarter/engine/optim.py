"""Optimizer and learning-rate scheduler from params."""

from __future__ import annotations

import torch

from torchstarter.config import Params


def build_optimizer(params: Params, model: torch.nn.Module) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    lr, wd = params.learning_rate, params.weight_decay
    if params.optimizer == "sgd":
        return torch.optim.SGD(trainable, lr=lr, momentum=params.momentum, weight_decay=wd)
    cls = torch.optim.AdamW if params.optimizer == "adamw" else torch.optim.Adam
    # foreach updates all tensors of a step in a few fused kernels; same math as the loop.
    return cls(trainable, lr=lr, weight_decay=wd, foreach=True)


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
