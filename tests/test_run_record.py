"""run.json says what ran and how it ended; TensorBoard gets every epoch's scalars."""

import json
import subprocess

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import torchstarter
from torchstarter.experiment.training import train


def test_a_finished_run_records_versions_seed_device_and_times(make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=1, seed=7)
    train(model_dir, sample_data, console=False)
    record = json.loads((model_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["error"] is None
    assert record["torchstarter_version"] == torchstarter.__version__
    assert record["torch_version"] == torch.__version__
    assert record["seed"] == 7 and record["device"] == "cpu"
    assert record["started"] <= record["ended"]
    assert isinstance(record["command"], list)


def test_git_commit_of_the_working_directory_is_recorded(make_experiment, sample_data,
                                                          tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "a.txt").write_text("a")
    subprocess.run([*git, "add", "a.txt"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "a"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()
    monkeypatch.chdir(repo)
    model_dir = make_experiment(num_epochs=1)
    train(model_dir, sample_data, console=False)
    assert json.loads((model_dir / "run.json").read_text())["git_commit"] == head
    (repo / "a.txt").write_text("changed")
    train(model_dir, sample_data, console=False, overwrite=True)
    assert json.loads((model_dir / "run.json").read_text())["git_commit"] == head + "-dirty"


def test_tensorboard_gets_losses_metrics_lr_and_throughput_per_epoch(make_experiment,
                                                                     sample_data):
    model_dir = make_experiment(num_epochs=2)
    train(model_dir, sample_data, console=False)
    events = EventAccumulator(str(model_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr",
            "samples_per_s/train"} <= tags
    assert [e.step for e in events.Scalars("loss/val")] == [1, 2]
    history = json.loads((model_dir / "history.json").read_text())
    assert events.Scalars("accuracy/val")[1].value == \
        pytest.approx(history[1]["val_accuracy"])


def test_tensorboard_can_be_turned_off(make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=1, tensorboard=False)
    train(model_dir, sample_data, console=False)
    assert not (model_dir / "tensorboard").exists()
