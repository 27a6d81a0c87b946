import json

import torch

from torchstarter.engine.checkpoint import load_checkpoint
from torchstarter.experiment.training import train


def weights(model_dir):
    return load_checkpoint(model_dir / "last.pt")["model"]


def test_interrupted_and_restored_run_ends_with_identical_weights(make_experiment, sample_data):
    # Threads pinned: a count that follows the machine's load changes float sums.
    params = {"num_epochs": 6, "scheduler": "step", "step_size": 2, "gamma": 0.5,
              "num_threads": 1}
    straight = make_experiment("straight", **params)
    paused = make_experiment("paused", **params)
    train(straight, sample_data, console=False)
    train(paused, sample_data, console=False, stop_after_epoch=3)
    assert load_checkpoint(paused / "last.pt")["epoch"] == 3
    trainer = train(paused, sample_data, restore="last", console=False)
    assert trainer.epoch == 6
    a, b = weights(straight), weights(paused)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    history_a = json.loads((straight / "history.json").read_text())
    history_b = json.loads((paused / "history.json").read_text())
    assert [r["epoch"] for r in history_b] == [1, 2, 3, 4, 5, 6]
    drop_time = [{k: v for k, v in r.items() if k != "seconds"} for r in history_a]
    assert drop_time == [{k: v for k, v in r.items() if k != "seconds"} for r in history_b]
    assert "resumed from last after epoch 3" in (paused / "train.log").read_text()


def test_restore_remembers_the_best_metric(make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=2)
    first = train(model_dir, sample_data, console=False)
    best = first.early_stopping.best
    again = train(model_dir, sample_data, restore="last", console=False,
                  overrides={"num_epochs": 3})
    assert again.epoch == 3
    assert again.early_stopping.best >= best
    best_file = json.loads((model_dir / "metrics_val_best_weights.json").read_text())
    assert best_file["accuracy"] == again.early_stopping.best


def test_data_order_is_a_function_of_seed_and_epoch():
    from torchstarter.engine.batching import epoch_order

    a = epoch_order(50, 230, 3, shuffle=True)
    assert torch.equal(a, epoch_order(50, 230, 3, shuffle=True))
    assert not torch.equal(a, epoch_order(50, 230, 4, shuffle=True))
    assert not torch.equal(a, epoch_order(50, 231, 3, shuffle=True))
    assert sorted(a.tolist()) == list(range(50))


def test_restore_refuses_a_changed_optimizer_or_schedule(make_experiment, sample_data):
    import pytest

    from torchstarter.errors import UserError

    model_dir = make_experiment(num_epochs=1)
    train(model_dir, sample_data, console=False)
    before = (model_dir / "last.pt").read_bytes()
    with pytest.raises(UserError, match=r"learning_rate 0.001 -> 0.01"):
        train(model_dir, sample_data, restore="last", console=False,
              overrides={"learning_rate": 0.01, "num_epochs": 2})
    assert (model_dir / "last.pt").read_bytes() == before


def test_more_epochs_on_restore_stretch_a_cosine_schedule(make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=1, scheduler="cosine")
    train(model_dir, sample_data, console=False)
    trainer = train(model_dir, sample_data, restore="last", console=False,
                    overrides={"num_epochs": 3})
    assert trainer.scheduler.T_max == 3
    lrs = [row["lr"] for row in trainer.history]
    assert lrs[0] > lrs[1] > lrs[2] > 0


def test_restore_auto_starts_a_new_run_then_continues_it(make_experiment, sample_data, capsys):
    """What a job a scheduler may requeue passes every time: one command line for both."""
    from torchstarter.cli.main import main

    model_dir = make_experiment(num_epochs=1)
    args = ["train", "--model-dir", str(model_dir), "--data-dir", str(sample_data),
            "--restore", "auto"]
    assert main(args) == 0
    assert "--restore auto: no checkpoint yet, a new run" in (model_dir / "train.log").read_text()
    assert main([*args, "--set", "num_epochs=2"]) == 0
    log = (model_dir / "train.log").read_text()
    assert "--restore auto: continuing from last.pt" in log
    assert "resumed from last after epoch 1" in log
    assert load_checkpoint(model_dir / "last.pt")["epoch"] == 2
    assert json.loads((model_dir / "run.json").read_text())["restored_from"] == "last"
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 2
    assert "--restore auto and --overwrite" in capsys.readouterr().err
