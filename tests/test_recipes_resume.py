"""Runs with every recipe on resume bitwise: EMA, accumulation, per-step schedules."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from test_graceful_stop import StopAfterChecks

from torchstarter.cli.main import main
from torchstarter.engine.checkpoint import load_checkpoint
from torchstarter.engine.interrupt import GracefulStop
from torchstarter.experiment import training
from torchstarter.experiment.training import train

RECIPES = {"num_epochs": 3, "ema_decay": 0.9, "ema_warmup": True, "accumulation_steps": 2,
           "scheduler": "cosine", "scheduler_interval": "step", "warmup_steps": 5,
           "label_smoothing": 0.1, "class_weights": "balanced", "num_threads": 1}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rows(model_dir):
    return [{k: v for k, v in r.items() if k != "seconds"}
            for r in json.loads((model_dir / "history.json").read_text())]


@pytest.fixture
def straight(make_experiment, sample_data):
    model_dir = make_experiment("straight", **RECIPES)
    train(model_dir, sample_data, console=False)
    return model_dir


def test_paused_after_an_epoch_and_restored_ends_bitwise_equal(straight, make_experiment,
                                                             sample_data):
    paused = make_experiment("paused", **RECIPES)
    train(paused, sample_data, console=False, stop_after_epoch=1)
    train(paused, sample_data, restore="last", console=False)
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(paused / "last.pt")
    assert same(a["model"], b["model"]) and same(a["trained_model"], b["trained_model"])
    assert a["ema"] == b["ema"] and a["optimizer_steps"] == b["optimizer_steps"]
    assert a["step_schedulers"] == b["step_schedulers"]
    assert rows(straight) == rows(paused)


def test_stopped_mid_epoch_pauses_at_a_group_end_and_resumes_bitwise(
        straight, make_experiment, sample_data, monkeypatch):
    stopped = make_experiment("stopped", **RECIPES)
    # 25 batches an epoch (13 groups of 2 but the last of 1) plus one check at its end:
    # the stop is asked at step 5 of epoch 2, in the middle of group 3.
    monkeypatch.setattr(training, "GracefulStop", lambda: StopAfterChecks(31, signal.SIGINT))
    assert main(["train", "--model-dir", str(stopped), "--data-dir", str(sample_data)]) == 130
    partial = load_checkpoint(stopped / "last.pt")["partial_epoch"]
    assert (partial["epoch"], partial["step"]) == (2, 6)  # the group finished first
    assert [step for step, _ in partial["step_lrs"]] == [14, 15, 16]  # for TensorBoard
    monkeypatch.setattr(training, "GracefulStop", GracefulStop)
    assert main(["train", "--model-dir", str(stopped), "--data-dir", str(sample_data),
                 "--restore", "last"]) == 0
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(stopped / "last.pt")
    assert same(a["model"], b["model"]) and same(a["trained_model"], b["trained_model"])
    assert a["optimizer_steps"] == b["optimizer_steps"] == 3 * 13
    assert rows(straight) == rows(stopped)


def test_a_mid_epoch_checkpoint_refuses_other_accumulation_steps(
        make_experiment, sample_data, monkeypatch, capsys):
    stopped = make_experiment("stopped", **RECIPES)
    monkeypatch.setattr(training, "GracefulStop", lambda: StopAfterChecks(31, signal.SIGINT))
    assert main(["train", "--model-dir", str(stopped), "--data-dir", str(sample_data)]) == 130
    capsys.readouterr()
    monkeypatch.setattr(training, "GracefulStop", GracefulStop)
    assert main(["train", "--model-dir", str(stopped), "--data-dir", str(sample_data),
                 "--restore", "last", "--set", "accumulation_steps=3"]) == 2
    err = capsys.readouterr().err
    assert "accumulation_steps 2 -> 3" in err and len(err.strip().splitlines()) == 1
