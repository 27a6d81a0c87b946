"""Schedules that move after every optimizer step: warmup, cosine and one-cycle."""

from __future__ import annotations

import math

import pytest
import torch

from torchstarter.engine.optim import build_scheduler, build_step_schedulers
from torchstarter.errors import UserError
from torchstarter.experiment.training import train
from torchstarter.tasks.registry import resolve_params


def lrs(extra: dict, steps_per_epoch: int = 5, epochs: int = 2) -> list[float]:
    """The rate each optimizer step of the run uses."""
    _, params = resolve_params({"task": "signs", "learning_rate": 1.0, "batch_size": 1,
                                "num_epochs": epochs, **extra}, "test")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    per_epoch = build_scheduler(params, optimizer, "max")
    per_step = build_step_schedulers(params, optimizer, steps_per_epoch)
    seen = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            for scheduler in per_step:
                scheduler.step()
        if per_epoch is not None:
            per_epoch.step()
    return seen


def test_warmup_rises_linearly_then_leaves_the_rate_alone():
    assert lrs({"warmup_steps": 4}) == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1])


def test_warmup_fraction_counts_steps_of_the_whole_run():
    assert lrs({"warmup_fraction": 0.2})[:3] == pytest.approx([0.5, 1, 1])


def test_warmup_composes_with_a_per_epoch_schedule():
    seen = lrs({"warmup_steps": 2, "scheduler": "step", "step_size": 1, "gamma": 0.5})
    assert seen == pytest.approx([0.5, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5])


def test_cosine_per_step_follows_the_closed_form():
    seen = lrs({"scheduler": "cosine", "scheduler_interval": "step"})
    expected = [(1 + math.cos(math.pi * s / 10)) / 2 for s in range(10)]
    assert seen == pytest.approx(expected, abs=1e-9)


def test_cosine_per_epoch_is_still_the_default():
    assert lrs({"scheduler": "cosine"}) == pytest.approx([1] * 5 + [0.5] * 5, abs=1e-9)


def test_onecycle_rises_for_the_warmup_then_anneals_to_near_zero():
    seen = lrs({"scheduler": "onecycle", "warmup_steps": 3})
    peak = seen.index(max(seen))
    assert peak == 2 and seen[peak] == pytest.approx(1.0)  # the 3rd step, as warmup's
    assert seen[0] < 0.1 and seen[-1] < 0.05
    assert all(a < b for a, b in zip(seen[:peak], seen[1:peak + 1], strict=True))


@pytest.mark.parametrize("extra, words", [
    ({"scheduler": "plateau", "scheduler_interval": "step"}, "needs scheduler cosine"),
    ({"scheduler": "onecycle", "scheduler_interval": "epoch"}, "onecycle moves after every"),
    ({"warmup_steps": 5, "warmup_fraction": 0.1}, "both set; keep one"),
])
def test_combinations_that_cannot_work_are_refused_in_one_line(extra, words):
    with pytest.raises(UserError, match=words) as err:
        resolve_params({"task": "signs", "learning_rate": 1.0, "batch_size": 1,
                        "num_epochs": 2, **extra}, "p.json")
    assert "\n" not in str(err.value) and str(err.value).startswith("p.json: key")


def test_the_learning_rate_of_every_step_goes_to_tensorboard(make_experiment, sample_data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model_dir = make_experiment(scheduler="onecycle", num_threads=1)
    trainer = train(model_dir, sample_data, console=False)
    events = EventAccumulator(str(model_dir / "tensorboard" / "per_step"))
    events.Reload()
    logged = events.Scalars("lr")
    assert [e.step for e in logged] == list(range(1, trainer.optimizer_steps + 1))
    # each point is the rate its step used: one-cycle starts at learning_rate / 25
    assert logged[0].value == pytest.approx(1e-3 / 25)
    assert max(e.value for e in logged) == pytest.approx(1e-3, rel=1e-3)


def test_more_epochs_on_restore_stretch_a_per_step_cosine(make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=1, scheduler="cosine", scheduler_interval="step",
                                num_threads=1)
    first = train(model_dir, sample_data, console=False)
    steps = first.optimizer_steps
    trainer = train(model_dir, sample_data, restore="last", console=False,
                    overrides={"num_epochs": 3})
    (cosine,) = trainer.step_schedulers
    assert cosine.T_max == 3 * steps
    lrs = [row["lr"] for row in trainer.history]
    assert lrs[0] > lrs[1] > lrs[2] > 0
    expected = 1e-3 * (1 + math.cos(math.pi * 2 * steps / (3 * steps))) / 2
    assert lrs[2] == pytest.approx(expected, rel=1e-6)


def test_onecycle_cannot_be_stretched_on_restore(make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=1, scheduler="onecycle", num_threads=1)
    train(model_dir, sample_data, console=False)
    with pytest.raises(UserError, match="num_epochs 1 -> 2"):
        train(model_dir, sample_data, restore="last", console=False,
              overrides={"num_epochs": 2})


def test_a_checkpoint_from_before_the_recipes_resumes(make_experiment, sample_data):
    from torchstarter.engine.checkpoint import load_checkpoint, save_checkpoint

    model_dir = make_experiment(num_epochs=1, num_threads=1)
    train(model_dir, sample_data, console=False)
    state = load_checkpoint(model_dir / "last.pt")
    for key in ("step_schedulers", "optimizer_steps"):
        del state[key]
    for key in ("scheduler_interval", "warmup_steps", "warmup_fraction", "accumulation_steps",
                "ema_decay", "ema_warmup", "label_smoothing", "class_weights"):
        del state["params"][key]
    state.pop("format")
    save_checkpoint(state, model_dir / "last.pt")
    trainer = train(model_dir, sample_data, restore="last", console=False,
                    overrides={"num_epochs": 2})
    assert trainer.epoch == 2


@pytest.mark.parametrize("total", range(1, 13))
def test_onecycle_takes_every_run_length_and_warmup(total):
    for warm in range(0, total + 2):
        seen = lrs({"scheduler": "onecycle", "warmup_steps": warm}, steps_per_epoch=total,
                   epochs=1)
        assert len(seen) == total and all(math.isfinite(x) and x > 0 for x in seen)


def test_onecycle_leaves_momentum_and_betas_alone():
    _, params = resolve_params({"task": "signs", "learning_rate": 1.0, "batch_size": 1,
                                "num_epochs": 1, "scheduler": "onecycle"}, "test")
    weight = torch.zeros(1, requires_grad=True)
    sgd = torch.optim.SGD([weight], lr=1.0, momentum=0.0)
    adam = torch.optim.AdamW([weight], lr=1.0)
    for optimizer in (sgd, adam):
        (scheduler,) = build_step_schedulers(params, optimizer, 10)
        for _ in range(5):
            optimizer.step()
            scheduler.step()
    assert sgd.param_groups[0]["momentum"] == 0.0
    assert adam.param_groups[0]["betas"] == (0.9, 0.999)


def test_warmup_longer_than_the_run_warns(caplog):
    with caplog.at_level("WARNING", logger="torchstarter"):
        seen = lrs({"warmup_steps": 20})
    assert "warmup_steps 20 is more than the run's 10 optimizer steps" in caplog.text
    assert seen[-1] == pytest.approx(1.0)


def test_stretching_a_cosine_keeps_a_warmup_that_is_still_rising():
    from torchstarter.engine.optim import extend_schedules

    _, params = resolve_params({"task": "signs", "learning_rate": 1.0, "batch_size": 1,
                                "num_epochs": 1, "scheduler": "cosine",
                                "scheduler_interval": "step", "warmup_steps": 50}, "t")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    per_step = build_step_schedulers(params, optimizer, 100)
    for _ in range(10):
        optimizer.step()
        for scheduler in per_step:
            scheduler.step()
    extend_schedules(None, per_step, 2, 200)  # restored with num_epochs 2
    expected = (1 + math.cos(math.pi * 10 / 200)) / 2 * 11 / 50
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    for _ in range(39):
        optimizer.step()
        for scheduler in per_step:
            scheduler.step()
    expected = (1 + math.cos(math.pi * 49 / 200)) / 2  # warmup done: the plain cosine
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("extra", [{"scheduler": "onecycle"}, {"warmup_steps": 3}])
def test_a_per_step_schedule_refuses_another_batch_size_on_restore(make_experiment,
                                                                    sample_data, extra):
    model_dir = make_experiment(num_epochs=2, num_threads=1, **extra)
    train(model_dir, sample_data, console=False, stop_after_epoch=1)
    with pytest.raises(UserError, match="batch_size 32 -> 16"):
        train(model_dir, sample_data, restore="last", console=False,
              overrides={"batch_size": 16})


def test_a_warmup_fraction_restored_with_more_epochs_never_overshoots(make_experiment,
                                                                       sample_data):
    # 25 steps an epoch: 5% of one epoch is a warmup of one step; 3 epochs would make 4.
    model_dir = make_experiment(num_epochs=1, warmup_fraction=0.05, num_threads=1)
    train(model_dir, sample_data, console=False)
    trainer = train(model_dir, sample_data, restore="last", console=False,
                    overrides={"num_epochs": 3})
    assert max(row["lr"] for row in trainer.history) == pytest.approx(1e-3)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
