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
    params = {"num_epochs": 3, "augmentation": True}
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
