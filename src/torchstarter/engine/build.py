"""A Trainer and all its parts, made from params: the one place that reads them for it."""

from __future__ import annotations

import torch

from torchstarter.config import Params
from torchstarter.engine.distributed import SINGLE, Distributed
from torchstarter.engine.forward import loss_scaler, place_model, training_module
from torchstarter.engine.optim import build_optimizer, build_scheduler
from torchstarter.engine.rng import RANK_STREAM, derived_seed, seed_everything
from torchstarter.engine.task import DataInfo, Task
from torchstarter.engine.trainer import Trainer


def build_trainer(task: Task, params: Params, device: torch.device,
                  data_info: DataInfo | None = None, dist: Distributed = SINGLE) -> Trainer:
    """The task's model on `device`, its optimizer (with the task's parameter groups, if it
    sets any), scheduler and loss scaler, and the module the train step calls."""
    model = place_model(task.build_model(params, data_info), params, device)
    train_model = training_module(model, params, device, dist)
    optimizer = build_optimizer(params, model, task.configure_optimizer(params, model))
    if dist.rank > 0:  # DDP gave every process rank 0's weights; now its own dropout
        seed_everything(derived_seed(params.seed, 0, RANK_STREAM + dist.rank))
    scheduler = build_scheduler(params, optimizer, params.metric_mode)
    return Trainer(task, params, model, optimizer, scheduler, device=device, dist=dist,
                   train_model=train_model, scaler=loss_scaler(device, params.precision),
                   data_info=data_info)
