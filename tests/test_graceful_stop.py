"""Ctrl-C and SIGTERM: finish the step, save a resumable checkpoint, exit 130 or 143."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from torchstarter.cli.main import main
from torchstarter.engine.checkpoint import load_checkpoint
from torchstarter.engine.interrupt import GracefulStop
from torchstarter.experiment import training
from torchstarter.experiment.training import train


class StopAfterChecks:
    """Stands in for GracefulStop: reports a signal from the n-th check on."""

    def __init__(self, n: int, signum: int):
        self.n, self.checks, self.signum_to_send = n, 0, signum
        self.signum = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def __bool__(self):
        self.checks += 1
        if self.checks >= self.n:
            self.signum = self.signum_to_send
        return self.signum is not None


def run_json(model_dir):
    return json.loads((model_dir / "run.json").read_text())


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_mid_epoch_saves_a_checkpoint_that_resumes_to_identical_weights(
        make_experiment, sample_data, monkeypatch, capsys, signum, code):
    params = {"num_epochs": 3, "augmentation": True, "num_threads": 1}  # see test_resume
    straight = make_experiment("straight", **params)
    stopped = make_experiment("stopped", **params)
    train(straight, sample_data, console=False)
    # 25 steps an epoch plus one check at its end: check 30 is step 4 of epoch 2.
    monkeypatch.setattr(training, "GracefulStop", lambda: StopAfterChecks(30, signum))
    assert main(["train", "--model-dir", str(stopped), "--data-dir", str(sample_data)]) == code
    assert "rerun with --restore last" in capsys.readouterr().err
    state = load_checkpoint(stopped / "last.pt")
    assert state["epoch"] == 1
    assert (state["partial_epoch"]["epoch"], state["partial_epoch"]["step"]) == (2, 4)
    assert run_json(stopped)["status"] == "interrupted"
    assert len(json.loads((stopped / "history.json").read_text())) == 1

    monkeypatch.setattr(training, "GracefulStop", GracefulStop)
    assert main(["train", "--model-dir", str(stopped), "--data-dir", str(sample_data),
                 "--restore", "last"]) == 0
    a = load_checkpoint(straight / "last.pt")["model"]
    b = load_checkpoint(stopped / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((stopped / "history.json").read_text())
    expected = json.loads((straight / "history.json").read_text())
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in history] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in expected]
    record = run_json(stopped)
    assert record["status"] == "finished" and record["restored_from"] == "last"
    assert record["attempts"][0]["status"] == "interrupted"


def test_a_mid_epoch_checkpoint_refuses_another_batch_size(make_experiment, sample_data,
                                                           monkeypatch, capsys):
    model_dir = make_experiment(num_epochs=2)
    monkeypatch.setattr(training, "GracefulStop", lambda: StopAfterChecks(5, signal.SIGINT))
    assert main(["train", "--model-dir", str(model_dir), "--data-dir", str(sample_data)]) == 130
    monkeypatch.setattr(training, "GracefulStop", GracefulStop)
    capsys.readouterr()
    assert main(["train", "--model-dir", str(model_dir), "--data-dir", str(sample_data),
                 "--restore", "last", "--set", "batch_size=16"]) == 2
    assert "batch_size 32 -> 16" in capsys.readouterr().err


def test_second_ctrl_c_raises_at_once():
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_ignored_before_the_run_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with GracefulStop() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert not stop
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_train_started_with_sigint_ignored_keeps_training_on_sigint_and_stops_on_sigterm(
        make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=200)
    proc = subprocess.Popen([sys.executable, "-m", "torchstarter", "train", "--model-dir",
                             str(model_dir), "--data-dir", str(sample_data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while not (model_dir / "history.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    epochs = len(json.loads((model_dir / "history.json").read_text()))
    proc.send_signal(signal.SIGINT)
    while len(json.loads((model_dir / "history.json").read_text())) < epochs + 2 \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None  # still training two epochs after the SIGINT
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "SIGINT" not in err and "SIGTERM" in err


def test_sigterm_to_a_real_training_process_saves_and_exits_143(make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=200)
    proc = subprocess.Popen([sys.executable, "-m", "torchstarter", "train", "--model-dir",
                             str(model_dir), "--data-dir", str(sample_data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (model_dir / "history.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "SIGTERM" in err
    assert run_json(model_dir)["status"] == "interrupted"
    state = load_checkpoint(model_dir / "last.pt")
    assert state["epoch"] >= 1
    assert not list(model_dir.glob(".*.tmp")) and not (model_dir / ".train.lock").exists()


DATASET_TASK = '''
import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.data import Dataset

SCHEMA = {}
DEFAULT_METRIC = "accuracy"

def accuracy(logits, labels):
    return (logits.argmax(1) == labels).sum(), labels.numel()

METRICS = {"accuracy": accuracy}

class Points(Dataset):
    """Read one example at a time, as a task with files on disk would."""
    def __init__(self, split):
        gen = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        self.labels = torch.randint(0, 2, (96,), generator=gen)
        self.inputs = torch.randn(96, 4, generator=gen) + 2.0 * self.labels[:, None].float()
    def __len__(self):
        return len(self.labels)
    def __getitem__(self, i):
        return self.inputs[i], self.labels[i]

def load_split(params, data_dir, split):
    return Points(split)

def build_model(params):
    return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 2))

def loss_fn(logits, labels):
    return F.cross_entropy(logits, labels)
'''


def test_a_dataset_task_resumed_mid_epoch_ends_with_identical_weights(tmp_path, monkeypatch):
    """A DataLoader seeds itself from its own generator, so the resumed run draws exactly
    the dropout masks of the unbroken one."""
    (tmp_path / "points.py").write_text(DATASET_TASK)
    dirs = []
    for name in ("straight", "stopped"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "params.json").write_text(json.dumps({
            "task": "../points.py", "learning_rate": 0.05, "batch_size": 8, "num_epochs": 3}))
        dirs.append(tmp_path / name)
    straight, stopped = dirs
    train(straight, tmp_path, console=False)
    # 12 steps an epoch plus one check at its end: check 16 is step 3 of epoch 2
    monkeypatch.setattr(training, "GracefulStop", lambda: StopAfterChecks(16, signal.SIGINT))
    assert main(["train", "--model-dir", str(stopped), "--data-dir", str(tmp_path)]) == 130
    assert load_checkpoint(stopped / "last.pt")["partial_epoch"]["step"] == 3
    monkeypatch.setattr(training, "GracefulStop", GracefulStop)
    train(stopped, tmp_path, restore="last", console=False)
    a = load_checkpoint(straight / "last.pt")["model"]
    b = load_checkpoint(stopped / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluating_a_mid_epoch_checkpoint_says_where_it_stopped(make_experiment, sample_data,
                                                                 monkeypatch):
    model_dir = make_experiment(num_epochs=2)
    monkeypatch.setattr(training, "GracefulStop", lambda: StopAfterChecks(30, signal.SIGINT))
    assert main(["train", "--model-dir", str(model_dir), "--data-dir", str(sample_data)]) == 130
    assert main(["evaluate", "--model-dir", str(model_dir), "--data-dir", str(sample_data),
                 "--split", "val", "--restore", "last"]) == 0
    metrics = json.loads((model_dir / "metrics_val_last.json").read_text())
    assert metrics["epoch"] == 1 and metrics["partial_epoch"] == {"epoch": 2, "step": 4}


def test_a_mid_epoch_resume_refuses_batches_grouped_another_way(tmp_path, monkeypatch, capsys):
    from torchstarter.tasks import load_task

    ner = load_task("ner")
    ner.write_sample_data(tmp_path / "raw")
    ner.build_dataset(ner.build_options(tmp_path / "raw", tmp_path / "data"))
    ner.build_vocab(ner.vocab_options(tmp_path / "data", min_count=1))
    model_dir = tmp_path / "exp"
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({
        "task": "ner", "learning_rate": 0.01, "batch_size": 4, "num_epochs": 2,
        "embedding_dim": 8, "lstm_hidden_dim": 8}))
    monkeypatch.setattr(training, "GracefulStop", lambda: StopAfterChecks(5, signal.SIGINT))
    args = ["train", "--model-dir", str(model_dir), "--data-dir", str(tmp_path / "data")]
    assert main(args) == 130
    monkeypatch.setattr(training, "GracefulStop", GracefulStop)
    capsys.readouterr()
    assert main([*args, "--restore", "last", "--set", "bucket_by_length=true"]) == 2
    err = capsys.readouterr().err
    assert "stopped at step 5 of epoch 1" in err and "bucket_by_length" in err
    assert main([*args, "--restore", "last"]) == 0


def test_a_mid_epoch_checkpoint_from_another_kind_of_device_resumes_with_a_warning(
        make_experiment, sample_data, monkeypatch):
    """A GPU generator's state does not fit a CPU generator: the epoch goes on, said so."""
    from torchstarter.engine.checkpoint import save_checkpoint

    model_dir = make_experiment(num_epochs=2, augmentation=True)
    monkeypatch.setattr(training, "GracefulStop", lambda: StopAfterChecks(5, signal.SIGINT))
    assert main(["train", "--model-dir", str(model_dir), "--data-dir", str(sample_data)]) == 130
    state = load_checkpoint(model_dir / "last.pt")
    state["partial_epoch"]["augment_rng"] = torch.zeros(16, dtype=torch.uint8)  # CUDA-sized
    save_checkpoint(state, model_dir / "last.pt")
    monkeypatch.setattr(training, "GracefulStop", GracefulStop)
    assert main(["train", "--model-dir", str(model_dir), "--data-dir", str(sample_data),
                 "--restore", "last"]) == 0
    assert "on another kind of device" in (model_dir / "train.log").read_text()
    assert load_checkpoint(model_dir / "last.pt")["epoch"] == 2
