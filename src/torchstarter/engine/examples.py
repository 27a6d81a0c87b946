"""Per-example results of a split: what `evaluate` writes one row each for, and the parts
that confidence intervals and run comparisons resample (see utils/stats.py).

A task gives them through its `examples` hook. A classification task can use
classification_examples(); NER builds its own (a row per sentence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from torchstarter.config import Params
from torchstarter.engine.batching import batch_groups, iterate_groups, place
from torchstarter.engine.forward import autocast_for, prepare

RATIO, F1 = "ratio", "f1"  # how a metric follows from its summed parts


@dataclass
class Examples:
    """rows: one JSON-able dict per example, in the split's order, each with an "id";
    `unit` says what a row is (image, sentence): what the bootstrap resamples.
    parts: metric -> (n x k array of per-example parts, RATIO or F1).
    correct: per `correct_unit` (the rows, or e.g. tokens) whether the prediction was
    right, for McNemar's test."""

    rows: list[dict[str, Any]]
    parts: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    correct: np.ndarray | None = None
    unit: str = "example"
    correct_unit: str = "example"


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
