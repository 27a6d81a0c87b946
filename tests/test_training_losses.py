"""label_smoothing and class_weights shape the training loss only, exactly per example."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchstarter.engine.batching import TensorData
from torchstarter.engine.build import build_trainer
from torchstarter.engine.losses import ClassificationLoss, balanced_class_weights
from torchstarter.tasks.registry import resolve_params
from torchstarter.tasks.signs.net import loss_fn


def test_balanced_weights_give_every_present_class_the_same_total_weight():
    labels = torch.tensor([0, 0, 0, 1, -1, 3])  # -1 is padding; class 2 is absent
    weights = balanced_class_weights(labels, 4)
    assert weights.tolist() == pytest.approx([5 / 9, 5 / 3, 0.0, 5 / 3])
    totals = torch.zeros(4).index_add_(0, labels[labels >= 0], weights[labels[labels >= 0]])
    assert totals[[0, 1, 3]].tolist() == pytest.approx([5 / 3] * 3)


def test_the_weighted_smoothed_loss_is_a_weighted_mean_of_per_example_losses():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 2, 0])
    weights = torch.tensor([2.0, 1.0, 0.5])
    value, count = ClassificationLoss(0.2, weights)(logits, labels)
    logp = logits.log_softmax(1)
    per = [-(0.8 * logp[i, y] + 0.2 * logp[i].mean()) for i, y in enumerate(labels.tolist())]
    w = weights[labels]
    assert float(count) == pytest.approx(float(w.sum()))
    assert float(value) == pytest.approx(float((torch.stack(per) * w).sum() / w.sum()))


def test_without_options_the_task_trains_on_its_plain_loss():
    task, params = resolve_params({"task": "signs", "learning_rate": 1e-3, "batch_size": 4,
                                   "num_epochs": 1}, "t")
    data = TensorData(torch.zeros(4, 3, 64, 64, dtype=torch.uint8), torch.arange(4))
    assert task.training_loss(params, data, None) is loss_fn


@pytest.mark.parametrize("extra", [{"label_smoothing": 0.3}, {"class_weights": "balanced"}])
def test_validation_loss_stays_plain_cross_entropy(extra):
    task, params = resolve_params({"task": "signs", "learning_rate": 1e-3, "batch_size": 4,
                                   "num_epochs": 1, "num_channels": 4, **extra}, "t")
    gen = torch.Generator().manual_seed(1)
    data = TensorData(torch.randint(0, 256, (12, 3, 64, 64), dtype=torch.uint8,
                                    generator=gen), torch.tensor([0] * 9 + [1, 2, 3]))
    trainer = build_trainer(task, params, torch.device("cpu"), train_data=data)
    assert isinstance(trainer.train_loss, ClassificationLoss)
    trainer.model.eval()
    with torch.no_grad():
        plain = F.cross_entropy(trainer.model(data.inputs), data.labels)
    assert trainer.evaluate(data)["loss"] == pytest.approx(float(plain), rel=1e-5)
