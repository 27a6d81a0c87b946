"""label_smoothing and class_weights shape the training loss only, exactly per example."""

from __future__ import annotations

import types

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
    assert task.training_loss(params, data, None) == task.loss


def test_a_task_built_on_signs_trains_on_its_own_loss():
    """A `torchstarter new` project subclasses SignsTask and edits its loss: training must
    use that loss, not the built-in one, when no training-only option is set."""
    from torchstarter.tasks.signs import SignsTask

    class Mine(SignsTask):
        def loss(self, outputs, labels):
            return loss_fn(outputs, labels)._replace(count=99)

    task = Mine()
    _, params = resolve_params({"task": "signs", "learning_rate": 1e-3, "batch_size": 4,
                                "num_epochs": 1}, "t")
    data = TensorData(torch.zeros(4, 3, 64, 64, dtype=torch.uint8), torch.arange(4))
    assert task.training_loss(params, data, None) == task.loss


def test_a_module_task_training_loss_hook_is_called(tmp_path):
    from torchstarter.tasks.module_task import ModuleTask

    module = types.ModuleType("mine")
    module.SCHEMA, module.METRICS, module.DEFAULT_METRIC = {}, {}, "loss"
    module.load_split = lambda params, data_dir, split: None
    module.build_model = lambda params: torch.nn.Linear(2, 2)
    module.loss_fn = lambda outputs, labels: F.cross_entropy(outputs, labels)
    seen = []

    def training_loss(params, train_data):  # data_info may be left out, as elsewhere
        seen.append(train_data)
        return lambda outputs, labels: 2 * F.cross_entropy(outputs, labels)

    module.training_loss = training_loss
    task = ModuleTask("mine", module)
    fn = task.training_loss(None, "the train split", None)
    logits, labels = torch.randn(3, 2), torch.tensor([0, 1, 1])
    value, count = fn(logits, labels)
    assert seen == ["the train split"] and count == 3
    assert float(value) == pytest.approx(2 * float(F.cross_entropy(logits, labels)))


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


def test_a_module_that_imports_the_signs_parts_keeps_their_training_options():
    from torchstarter.tasks.module_task import ModuleTask

    module = types.ModuleType("mine")
    exec("from torchstarter.tasks.signs import *", module.__dict__)
    task = ModuleTask("mine", module)
    data = TensorData(torch.zeros(4, 3, 64, 64, dtype=torch.uint8), torch.arange(4))
    _, plain = resolve_params({"task": "signs", "learning_rate": 1e-3, "batch_size": 4,
                               "num_epochs": 1}, "t")
    assert task.training_loss(plain, data, None) == task.loss
    smoothed = plain.replace(label_smoothing=0.3)
    logits, labels = torch.randn(4, 6), torch.arange(4)
    value, _ = task.training_loss(smoothed, data, None)(logits, labels)
    expected = F.cross_entropy(logits, labels, label_smoothing=0.3)
    assert float(value) == pytest.approx(float(expected))
