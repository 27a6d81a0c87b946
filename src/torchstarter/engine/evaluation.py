"""One pass over a split without gradients: exact loss and metrics of a model's weights.

A function of (model, data, task) and the params that say how to batch it: validation
each epoch, `evaluate` and anything else that scores weights use it, none of them
needs an optimizer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from torchstarter.config import Params
from torchstarter.engine.batching import batch_groups, batch_size_of, iterate_groups, place
from torchstarter.engine.distributed import SINGLE, Distributed
from torchstarter.engine.examples import RATIO, Examples
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


@torch.inference_mode()
def classification_examples(model: torch.nn.Module, data: Any, params: Params,
                            device: torch.device, class_names: list[str]) -> Examples:
    """Rows of id, true and predicted class, probability of each class and loss; parts
    for accuracy. Ids come from the data's `ids` (e.g. file names), else the row number."""
    ids = list(getattr(data, "ids", None) or range(len(data)))
    data = place(data, device)
    model.eval()
    autocast = autocast_for(device, params.precision)
    probs, labels, losses = [], [], []
    groups = batch_groups(data, torch.arange(len(data)), params.batch_size)
    for inputs, target in iterate_groups(data, groups, device):
        with autocast():
            logits = model(prepare(inputs, params.channels_last)).float()
        probs.append(logits.softmax(dim=1).cpu())
        losses.append(F.cross_entropy(logits, target, reduction="none").cpu())
        labels.append(target.cpu())
    order = torch.cat(groups).tolist()
    prob, label, loss = (torch.cat(t) for t in (probs, labels, losses))
    predicted = prob.argmax(dim=1)
    rows = [None] * len(order)
    for i, example in enumerate(order):
        rows[example] = {
            "id": str(ids[example]), "true": class_names[int(label[i])],
            "predicted": class_names[int(predicted[i])],
            "probabilities": {name: round(float(p), 6) for name, p in
                              zip(class_names, prob[i], strict=True)},
            "loss": round(float(loss[i]), 6)}
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(len(order))
    correct = (predicted == label)[back].numpy()
    parts = np.stack([correct.astype(np.float64), np.ones(len(correct))], axis=1)
    return Examples(rows, {"accuracy": (parts, RATIO)}, correct)
