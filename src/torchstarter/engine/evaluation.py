"""One pass over a split without gradients: exact loss and metrics of a model's weights.

A function of (model, data, task) and the params that say how to batch it: validation
each epoch, `evaluate` and anything else that scores weights use it, none of them
needs an optimizer.
"""

from __future__ import annotations

from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.batching import batch_groups, batch_size_of, iterate_groups, place
from torchstarter.engine.distributed import SINGLE, Distributed
from torchstarter.engine.forward import autocast_for, prepare
from torchstarter.engine.metrics import MetricTotals
from torchstarter.engine.task import Task


@torch.inference_mode()
def evaluate(model: torch.nn.Module, data: Any, task: Task, params: Params,
             device: torch.device, dist: Distributed = SINGLE) -> dict[str, float]:
    """Loss and every metric of `task` over all of `data`, in eval mode."""
    data = place(data, device)
    model.eval()
    autocast = autocast_for(device, params.precision)
    totals = MetricTotals(task.metrics, device, dist.all_reduce_sum)
    # Each process takes a contiguous part; the sums are added over processes at the end.
    order = torch.tensor_split(torch.arange(len(data)), dist.world_size)[dist.rank]
    # A process whose part is empty (fewer examples than processes) reads no batch but
    # still joins the sum of the totals in compute().
    groups = batch_groups(data, order, params.batch_size) if len(order) else []
    for inputs, labels in iterate_groups(data, groups, device, params.num_workers,
                                         generator=torch.Generator().manual_seed(0)):
        with autocast():
            outputs = model(prepare(inputs, params.channels_last))
            loss, count = task.loss(outputs, labels)
        totals.add(loss, count, outputs, labels, batch_size_of(labels))
    return totals.compute()
