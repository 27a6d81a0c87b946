"""channels_last: null is settled per machine by timing both layouts once, then cached."""

from __future__ import annotations

import json

import torch

from torchstarter.engine import memory_format
from torchstarter.engine.memory_format import CACHE_FILE, choose_channels_last
from torchstarter.experiment.training import train
from torchstarter.tasks import load_task
from torchstarter.tasks.registry import resolve_params

CPU = torch.device("cpu")


def signs_params(**changes):
    return resolve_params({"task": "signs", "learning_rate": 1e-3, "batch_size": 8, "num_epochs": 1,
                           "num_channels": 4, **changes}, "test")


def image_batch():
    return torch.randint(0, 255, (8, 3, 64, 64), dtype=torch.uint8), torch.randint(0, 6, (8,))


def test_a_layout_set_in_params_is_kept_without_timing(monkeypatch):
    monkeypatch.setattr(memory_format, "_time_both", lambda *a: 1 / 0)
    task, params = signs_params(channels_last=False)
    assert choose_channels_last(task, params, CPU, None, image_batch()) == (False,
                                                                            "set in params")


def test_inputs_that_are_not_images_are_left_contiguous(monkeypatch):
    monkeypatch.setattr(memory_format, "_time_both", lambda *a: 1 / 0)
    task, params = signs_params()
    choice, why = choose_channels_last(task, params, CPU, None,
                                       (torch.zeros(8, 5), torch.zeros(8)))
    assert choice is False and "not 4-d" in why


def test_the_faster_layout_is_chosen_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(memory_format.CACHE_ENV, str(tmp_path))
    task, params = signs_params()
    calls = []

    def timing(*args):
        calls.append(1)
        return 0.020, 0.010  # channels_last twice as fast

    monkeypatch.setattr(memory_format, "_time_both", timing)
    assert choose_channels_last(task, params, CPU, None, image_batch())[0] is True
    cached = json.loads((tmp_path / CACHE_FILE).read_text())
    assert len(cached) == 1 and next(iter(cached.values()))["channels_last"] is True
    choice, why = choose_channels_last(task, params, CPU, None, image_batch())
    assert choice is True and "timed earlier" in why and len(calls) == 1
    # another model (more channels) is timed apart
    monkeypatch.setattr(memory_format, "_time_both", lambda *a: (0.010, 0.020))
    task, wider = signs_params(num_channels=8)
    assert choose_channels_last(task, wider, CPU, None, image_batch())[0] is False


def test_timing_leaves_the_random_state_of_the_run_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv(memory_format.CACHE_ENV, str(tmp_path))
    task, params = signs_params()
    batch = image_batch()
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    choose_channels_last(task, params, CPU, None, batch)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_run_records_the_settled_layout_and_its_resume_keeps_it(make_experiment, sample_data,
                                                                  monkeypatch, tmp_path):
    monkeypatch.setenv(memory_format.CACHE_ENV, str(tmp_path / "cache"))  # nothing cached
    model_dir = make_experiment(num_epochs=1)
    monkeypatch.setattr(memory_format, "_time_both", lambda *a: (0.010, 0.020))
    train(model_dir, sample_data)
    assert json.loads((model_dir / "resolved_params.json").read_text())["channels_last"] is False
    assert "channels_last: false (timed on this CPU" in (model_dir / "train.log").read_text()
    monkeypatch.setattr(memory_format, "_time_both", lambda *a: 1 / 0)
    train(model_dir, sample_data, "last", {"num_epochs": 2})
    log = (model_dir / "train.log").read_text()
    assert "channels_last: false (as in the checkpoint being continued)" in log
    assert load_task("signs")  # the task module stays importable after both runs


def test_a_cache_that_cannot_be_written_costs_only_the_timing(tmp_path, monkeypatch):
    (tmp_path / CACHE_FILE).mkdir()  # a folder where the cache file goes
    monkeypatch.setenv(memory_format.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(memory_format, "_time_both", lambda *a: (0.020, 0.010))
    task, params = signs_params()
    assert choose_channels_last(task, params, CPU, None, image_batch())[0] is True
    assert (tmp_path / CACHE_FILE).is_dir()
