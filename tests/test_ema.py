"""ema_decay: an average of the weights that validation, best.pt, evaluate and predict use."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from torchstarter.engine.checkpoint import load_checkpoint, save_checkpoint
from torchstarter.engine.ema import WeightAverage
from torchstarter.engine.evaluation import evaluate
from torchstarter.experiment.evaluation import load_trained
from torchstarter.experiment.training import train


def test_each_update_moves_the_average_by_one_minus_decay_toward_the_weights():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    start = [p.detach().clone() for p in average.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()
    for mine, before, now in zip(average.module.parameters(), start, model.parameters(),
                                 strict=True):
        torch.testing.assert_close(mine, 0.9 * before + 0.1 * now)
    model[1].running_mean.fill_(3.0)  # buffers are the trained model's, copied when used
    assert torch.equal(average.averaged()[1].running_mean, model[1].running_mean)


def test_warmup_lets_early_updates_follow_the_weights():
    average = WeightAverage(nn.Linear(1, 1), decay=0.999, warmup=True)
    assert average.current_decay() == pytest.approx(0.1)
    average.updates = 10_000
    assert average.current_decay() == pytest.approx(0.999)


def test_checkpoints_hold_the_average_as_model_and_the_trained_weights_beside_it(
        make_experiment, sample_data):
    model_dir = make_experiment(ema_decay=0.9, num_threads=1)
    trainer = train(model_dir, sample_data, console=False)
    state = load_checkpoint(model_dir / "last.pt")
    assert state["ema"]["updates"] == trainer.optimizer_steps > 0
    raw = trainer.model.state_dict()
    assert all(torch.equal(state["trained_model"][k], raw[k]) for k in raw)
    averaged = trainer.ema.averaged().state_dict()
    assert all(torch.equal(state["model"][k], averaged[k]) for k in raw)
    assert not all(torch.equal(state["model"][k], raw[k]) for k in raw)
    # what evaluate and predict load is the average
    model = load_trained(model_dir, "last").model
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k].cpu(), averaged[k]) for k in loaded)
    # and validation measured the average, not the trained weights
    val = trainer.task.load_split(trainer.params, sample_data, "val", None)
    history = json.loads((model_dir / "history.json").read_text())
    again = evaluate(trainer.ema.averaged(), val, trainer.task, trainer.params,
                     torch.device("cpu"))
    assert history[-1]["val_loss"] == pytest.approx(again["loss"], rel=1e-6)


def test_ema_resumed_from_a_checkpoint_without_an_average_starts_from_its_weights(
        make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=1)
    train(model_dir, sample_data, console=False)
    before = load_checkpoint(model_dir / "last.pt")["model"]
    trainer = train(model_dir, sample_data, restore="last", console=False,
                    overrides={"ema_decay": 0.99, "num_epochs": 2})
    log = (model_dir / "train.log").read_text()
    assert "holds no averaged weights; the average starts from its weights now" in log
    assert trainer.ema.updates == trainer.optimizer_steps // 2  # the second epoch's steps
    assert set(load_checkpoint(model_dir / "last.pt")) >= {"trained_model", "ema"}
    assert before  # the restore read it


def test_turning_ema_off_on_restore_continues_from_the_trained_weights(
        make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=1, ema_decay=0.9)
    train(model_dir, sample_data, console=False)
    path = model_dir / "first.pt"
    save_checkpoint(load_checkpoint(model_dir / "last.pt"), path)
    trained = load_checkpoint(path)["trained_model"]
    trainer = train(model_dir, sample_data, restore=str(path), console=False,
                    overrides={"ema_decay": None})  # nothing to train: the restore alone
    assert "EMA is off now" in (model_dir / "train.log").read_text()
    assert all(torch.equal(trainer.model.state_dict()[k], trained[k]) for k in trained)
    trainer = train(model_dir, sample_data, restore=str(path), console=False,
                    overrides={"ema_decay": None, "num_epochs": 2})
    assert trainer.ema is None and trainer.epoch == 2
    assert "trained_model" not in load_checkpoint(model_dir / "last.pt")


def test_averaging_every_n_steps_uses_the_decay_of_n_steps():
    model = nn.Linear(2, 2)
    average = WeightAverage(model, decay=0.9, every=2)
    start = [p.detach().clone() for p in average.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()  # step 1 of 2: nothing moves yet
    assert all(torch.equal(a, b) for a, b in zip(average.module.parameters(), start,
                                                 strict=True))
    average.update()
    for mine, before, now in zip(average.module.parameters(), start, model.parameters(),
                                 strict=True):
        torch.testing.assert_close(mine, 0.81 * before + 0.19 * now)
    assert average.updates == 2
