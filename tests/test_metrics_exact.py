import pytest
import torch

from torchstarter.engine.batching import TensorData
from torchstarter.engine.build import build_trainer
from torchstarter.engine.metrics import MetricTotals
from torchstarter.engine.task import Metric
from torchstarter.tasks.registry import resolve_params
from torchstarter.tasks.signs.net import accuracy


def test_accuracy_with_an_uneven_last_batch_is_exact_not_a_mean_of_batch_means():
    # 10 examples in batches of 4, 4, 2. The first 8 are right, the last 2 wrong:
    # exact accuracy is 0.8; a mean of batch means would give (1 + 1 + 0) / 3 = 0.667.
    labels = torch.zeros(10, dtype=torch.long)
    logits = torch.zeros(10, 6)
    logits[:8, 0] = 1.0
    logits[8:, 1] = 1.0
    totals = MetricTotals({"accuracy": Metric(accuracy)}, torch.device("cpu"))
    for chunk in torch.arange(10).split(4):
        totals.add(torch.tensor(1.0), len(chunk), logits[chunk], labels[chunk], len(chunk))
    assert totals.compute()["accuracy"] == pytest.approx(0.8)


def test_epoch_loss_is_weighted_by_items_per_batch():
    totals = MetricTotals({}, torch.device("cpu"))
    totals.add(torch.tensor(1.0), 4, None, torch.zeros(4), 4)
    totals.add(torch.tensor(4.0), 1, None, torch.zeros(1), 1)
    assert totals.compute()["loss"] == pytest.approx((4 * 1.0 + 1 * 4.0) / 5)


def test_evaluate_is_independent_of_the_batch_size():
    task, params = resolve_params({"task": "signs", "learning_rate": 1e-3, "batch_size": 7,
                                   "num_epochs": 1, "num_channels": 4}, "test")
    gen = torch.Generator().manual_seed(0)
    data = TensorData(torch.randint(0, 256, (23, 3, 64, 64), dtype=torch.uint8, generator=gen),
                      torch.randint(0, 6, (23,), generator=gen))
    trainer = build_trainer(task, params, torch.device("cpu"))
    small = trainer.evaluate(data)
    trainer.params = params.replace(batch_size=23)
    whole = trainer.evaluate(data)
    assert small["accuracy"] == pytest.approx(whole["accuracy"], abs=1e-12)
    assert small["loss"] == pytest.approx(whole["loss"], rel=1e-5)
