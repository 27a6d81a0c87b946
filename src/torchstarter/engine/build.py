"""A Trainer and all its parts, made from params: the one place that reads them for it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.batching import batch_groups, epoch_order
from torchstarter.engine.distributed import SINGLE, Distributed
from torchstarter.engine.ema import WeightAverage
from torchstarter.engine.forward import loss_scaler, place_model, training_module
from torchstarter.engine.optim import (
    build_optimizer,
    build_scheduler,
    build_step_schedulers,
    moves_per_step,
)
from torchstarter.engine.rng import RANK_STREAM, derived_seed, seed_everything
from torchstarter.engine.task import DataInfo, Loss, Task
from torchstarter.engine.trainer import Trainer


def build_trainer(task: Task, params: Params, device: torch.device,
                  data_info: DataInfo | None = None, dist: Distributed = SINGLE,
                  train_data: Any = None,
                  train_loss: Callable[[Any, Any], Loss] | None = None) -> Trainer:
    """The task's model on `device`, its optimizer (with the task's parameter groups, if it
    sets any), schedules, loss scaler, weight average, and the module the train step calls.

    `train_data` is needed by per-step schedules (they count an epoch's optimizer steps)
    and by a task's training_loss (e.g. class weights); without it the step uses task.loss.
    `train_loss`, when the caller has already built it from train_data, is used as it is.
    The task's initialize_model fills in pretrained weights before anything copies them
    (DDP, the weight average) or picks the trainable ones (the optimizer).
    """
    model = task.build_model(params, data_info)
    task.initialize_model(model, params, data_info)
    model = place_model(model, params, device)
    train_model = training_module(model, params, device, dist)
    optimizer = build_optimizer(params, model, task.configure_optimizer(params, model))
    if dist.rank > 0:  # DDP gave every process rank 0's weights; now its own dropout
        seed_everything(derived_seed(params.seed, 0, RANK_STREAM + dist.rank))
    scheduler = build_scheduler(params, optimizer, params.metric_mode)
    step_schedulers = []
    if moves_per_step(params):
        if train_data is None:
            raise ValueError("per-step schedules need train_data to count an epoch's steps")
        step_schedulers = build_step_schedulers(params, optimizer,
                                                optimizer_steps_per_epoch(params, train_data))
    if train_loss is None:
        train_loss = task.training_loss(params, train_data, data_info) \
            if train_data is not None else task.loss
    ema = WeightAverage(model, params.ema_decay, params.ema_warmup, params.ema_every) \
        if params.ema_decay is not None else None
    return Trainer(task, params, model, optimizer, scheduler, device=device, dist=dist,
                   train_model=train_model, scaler=loss_scaler(device, params.precision),
                   data_info=data_info, train_loss=train_loss,
                   step_schedulers=step_schedulers, ema=ema)


def optimizer_steps_per_epoch(params: Params, train_data: Any) -> int:
    """Batches of an epoch (by the data's own grouping rule), in groups of accumulation."""
    batches = len(batch_groups(train_data, epoch_order(len(train_data), params.seed, 1,
                                                       shuffle=True), params.batch_size))
    return math.ceil(batches / params.accumulation_steps)
