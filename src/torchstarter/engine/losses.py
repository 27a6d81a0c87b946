"""Training-only shapes of a classification loss, for a task's training_loss hook.

Each returns Loss(value, count) with value = sum of per-example losses / count, so the
epoch's train loss stays an exact mean and gradient accumulation normalises correctly:
with class weights, count is the batch's summed weight (sklearn's "balanced" rule gives
every class the same total weight over the train split).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from torchstarter.engine.task import Loss


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (classes present * n_c) per class c; 0 for a class absent from `labels` (it
    never weighs an example in training). Labels below 0 (padding) are not counted.
    Computed where `labels` are, without reading them back to the host."""
    real = (labels >= 0).reshape(-1).to(torch.float64)
    counts = torch.zeros(num_classes, dtype=torch.float64, device=labels.device)
    counts.scatter_add_(0, labels.clamp(min=0).reshape(-1).long(), real)
    present = (counts > 0).sum()
    weights = counts.sum() / (present * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights)).float()


class ClassificationLoss:
    """Cross-entropy with optional label smoothing and per-class weights, per example."""

    def __init__(self, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None):
        self.label_smoothing, self.class_weights = label_smoothing, class_weights

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> Loss:
        per_example = F.cross_entropy(logits.float(), labels, reduction="none",
                                      label_smoothing=self.label_smoothing)
        if self.class_weights is None:
            return Loss(per_example.mean(), labels.shape[0])
        if self.class_weights.device != logits.device:  # moved once, on the first batch
            self.class_weights = self.class_weights.to(logits.device)
        weight = self.class_weights[labels]
        total = weight.sum()
        return Loss((per_example * weight).sum() / total, total)
