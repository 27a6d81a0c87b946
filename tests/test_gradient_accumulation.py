"""accumulation_steps k with batch b steps exactly like batch k*b (up to float rounding)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from torchstarter.engine.batching import TensorData
from torchstarter.engine.build import build_trainer
from torchstarter.engine.rng import seed_everything
from torchstarter.tasks import load_task
from torchstarter.tasks.registry import resolve_params
from torchstarter.tasks.signs import SignsTask


class SignsWithoutBatchNorm(SignsTask):
    """Batch norm normalises each micro-batch by its own statistics, so a network with it
    cannot step like the big batch in any framework; the loss arithmetic is what is tested."""

    def build_model(self, params, data_info):
        model = super().build_model(params, data_info)
        for parent in model.modules():
            for name, child in parent.named_children():
                if isinstance(child, nn.BatchNorm1d | nn.BatchNorm2d):
                    setattr(parent, name, nn.Identity())
        return model


def signs_data(n: int, seed: int) -> TensorData:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 6, (n,), generator=gen)
    labels[:12] = 0  # uneven classes, so balanced class weights differ between batches
    return TensorData(torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=gen),
                      labels)


def fit_signs(extra: dict, batch_size: int, k: int):
    task = SignsWithoutBatchNorm()
    task.name = "signs"
    _, params = resolve_params({"task": "signs", "learning_rate": 0.05, "optimizer": "sgd",
                                "momentum": 0.0, "num_epochs": 2, "num_channels": 4,
                                "dropout_rate": 0.0, "augmentation": False, "num_threads": 1,
                                "batch_size": batch_size, "accumulation_steps": k, **extra},
                               "test")
    train, val = signs_data(22, 0), signs_data(8, 1)
    seed_everything(params.seed)
    trainer = build_trainer(task, params, torch.device("cpu"), train_data=train)
    results = trainer.fit(train, val)
    return results, trainer.model.state_dict(), trainer.optimizer_steps


@pytest.mark.parametrize("extra", [{}, {"class_weights": "balanced", "label_smoothing": 0.1}])
@pytest.mark.parametrize("b, k", [(3, 2), (2, 3)])
def test_signs_k_micro_batches_step_like_one_big_batch(extra, b, k):
    # 22 examples: big batches of 6 are 6, 6, 6, 4; micro-batches end on a short group.
    big, big_weights, big_steps = fit_signs(extra, b * k, 1)
    small, small_weights, small_steps = fit_signs(extra, b, k)
    assert big_steps == small_steps == 2 * 4
    for name, weight in big_weights.items():
        torch.testing.assert_close(small_weights[name], weight, rtol=1e-4, atol=1e-5)
    for a, c in zip(big, small, strict=True):
        assert c.train == pytest.approx(a.train, rel=1e-4, abs=1e-6)  # exact epoch means
        assert c.val == pytest.approx(a.val, rel=1e-4, abs=1e-6)


def test_the_naive_mean_of_micro_batch_means_would_differ():
    """The test above can fail: averaging per-batch means weighs a short batch too much."""
    x = torch.arange(4.0)
    exact = x.mean()
    naive = (x[:3].mean() + x[3:].mean()) / 2
    assert not torch.isclose(exact, naive)


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory):
    task = load_task("ner")
    root = tmp_path_factory.mktemp("ner")
    task.write_sample_data(root / "raw")
    task.build_dataset(task.build_options(root / "raw", root / "data"))
    task.build_vocab(task.vocab_options(root / "data", min_count=1))
    return root / "data"


def fit_ner(data_dir, extra: dict, batch_size: int, k: int):
    task = load_task("ner")
    _, params = resolve_params({"task": "ner", "learning_rate": 0.1, "optimizer": "sgd",
                                "momentum": 0.0, "num_epochs": 2, "num_threads": 1,
                                "batch_size": batch_size, "accumulation_steps": k, **extra},
                               "test")
    info = task.describe_data(params, data_dir)
    train = task.load_split(params, data_dir, "train", info)
    val = task.load_split(params, data_dir, "val", info)
    seed_everything(params.seed)
    trainer = build_trainer(task, params, torch.device("cpu"), info, train_data=train)
    results = trainer.fit(train, val)
    return results, trainer.model.state_dict(), len(train)


@pytest.mark.parametrize("extra", [{}, {"bidirectional": True, "crf": True}])
def test_ner_per_token_loss_accumulates_over_the_tokens_of_all_micro_batches(ner_data, extra):
    big, big_weights, n = fit_ner(ner_data, extra, 12, 1)
    small, small_weights, _ = fit_ner(ner_data, extra, 4, 3)
    assert n % 12 != 0, "the sample should end on a short group"
    for name, weight in big_weights.items():
        torch.testing.assert_close(small_weights[name], weight, rtol=1e-4, atol=1e-5)
    for a, c in zip(big, small, strict=True):
        assert c.train == pytest.approx(a.train, rel=1e-4, abs=1e-6)


def test_more_accumulation_steps_than_batches_warns_and_steps_once_an_epoch(caplog):
    with caplog.at_level(logging.WARNING, logger="torchstarter"):
        *_, steps = fit_signs({}, 8, 10)
    assert steps == 2  # 22 examples: 3 batches, one group an epoch
    assert "accumulation_steps 10 is more than the 3 batches of an epoch" in caplog.text
