"""SLURM preemption: the signal sbatch --signal sends before the time limit saves the run,
--requeue asks a fake `scontrol` (on PATH, recording its arguments) to requeue the job,
and the same command run again, as the requeued job does, continues to the same result
as a run never stopped."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY

from torchstarter.engine.checkpoint import load_checkpoint

JOB = "4242"


@pytest.fixture
def fake_scontrol(tmp_path):
    """A scontrol that writes its arguments to calls.txt, and fails when told to."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    calls = tmp_path / "calls.txt"
    script = bindir / "scontrol"
    script.write_text("#!/bin/sh\n"
                      f'echo "$@" >> "{calls}"\n'
                      'if [ -n "$FAKE_SCONTROL_FAILS" ]; then\n'
                      '  echo "scontrol: error: Invalid job id specified" >&2; exit 1\n'
                      "fi\n")
    script.chmod(0o755)
    env = dict(os.environ, OMP_NUM_THREADS="1", SLURM_JOB_ID=JOB,
               PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return env, calls


def train_command(model_dir, data, *extra):
    return [sys.executable, "-m", "torchstarter", "train", "--model-dir", str(model_dir),
            "--data-dir", str(data), "--restore", "auto", "--set", "num_threads=1", *extra]


def history(model_dir):
    try:
        return json.loads((model_dir / "history.json").read_text())
    except (OSError, ValueError):
        return []


def start_and_signal(command, env, model_dir, signum=signal.SIGUSR1):
    """Start `command`, send signum once the first epoch is saved; its exit code and text."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    deadline = time.monotonic() + 300
    while not history(model_dir):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no epoch finished"
        time.sleep(0.05)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def test_sigusr1_saves_requeues_and_the_requeued_command_ends_as_an_unstopped_run(
        make_experiment, sample_data, fake_scontrol):
    env, calls = fake_scontrol
    model_dir = make_experiment("preempted", num_epochs=6)
    command = train_command(model_dir, sample_data, "--requeue")
    code, out = start_and_signal(command, env, model_dir)
    assert code == 128 + signal.SIGUSR1, out
    assert "SIGUSR1: finishing the current step and saving" in out
    assert f"requeued SLURM job {JOB}" in out
    assert calls.read_text().split() == ["requeue", JOB]
    stopped_at = load_checkpoint(model_dir / "last.pt")["epoch"]
    assert stopped_at < 6

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert calls.read_text().split() == ["requeue", JOB]  # a finished run is not requeued
    assert "--restore auto: continuing from last.pt" in (model_dir / "train.log").read_text()
    assert [row["epoch"] for row in history(model_dir)] == list(range(1, 7))

    straight = make_experiment("straight", num_epochs=6)
    plain = subprocess.run(train_command(straight, sample_data), capture_output=True,
                           text=True, env=env, timeout=300)
    assert plain.returncode == 0, plain.stderr
    ours, theirs = (load_checkpoint(d / "last.pt")["model"] for d in (model_dir, straight))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_failing_scontrol_is_one_line_and_the_checkpoint_stays(make_experiment, sample_data,
                                                                fake_scontrol):
    env, calls = fake_scontrol
    model_dir = make_experiment(num_epochs=50)
    code, out = start_and_signal(train_command(model_dir, sample_data, "--requeue"),
                                 {**env, "FAKE_SCONTROL_FAILS": "1"}, model_dir)
    assert code == 1, out
    line = next(x for x in out.splitlines() if x.startswith("error:"))
    assert f"scontrol requeue {JOB} failed (scontrol: error: Invalid job id specified)" in line
    assert "submit the job again" in line
    assert (model_dir / "last.pt").is_file()


def test_sigterm_also_requeues(make_experiment, sample_data, fake_scontrol):
    """torchrun passes SIGTERM, not SIGUSR1, to its workers (see docs/cluster.md)."""
    env, calls = fake_scontrol
    model_dir = make_experiment(num_epochs=50)
    code, out = start_and_signal(train_command(model_dir, sample_data, "--requeue"), env,
                                 model_dir, signal.SIGTERM)
    assert code == 143 and calls.read_text().split() == ["requeue", JOB], out


def test_a_search_stopped_by_sigusr1_requeues_and_its_rerun_finishes(tmp_path, sample_data,
                                                                     fake_scontrol):
    env, calls = fake_scontrol
    parent = tmp_path / "lr"
    parent.mkdir()
    (parent / "params.json").write_text(json.dumps({**TINY, "num_epochs": 3}))
    command = [sys.executable, "-m", "torchstarter", "search", "--parent-dir", str(parent),
               "--data-dir", str(sample_data), "--grid", "learning_rate=1e-3,1e-2",
               "--requeue"]
    code, out = start_and_signal(command, env, parent / "learning_rate_0.001")
    assert code == 128 + signal.SIGUSR1, out
    assert "stopped by SIGUSR1" in out and f"requeued SLURM job {JOB}" in out
    assert calls.read_text().split() == ["requeue", JOB]
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 trials: 2 finished, 0 failed" in again.stdout
    assert "continued: learning_rate_0.001" in again.stdout


@pytest.mark.parametrize("env_change, extra, expected", [
    ({"SLURM_JOB_ID": ""}, ["--restore", "auto"], "SLURM_JOB_ID is not set"),
    ({}, [], "add --restore auto"),
    ({"PATH": "/nonexistent"}, ["--restore", "auto"], "scontrol is not on PATH"),
])
def test_requeue_that_cannot_work_is_refused_before_training(make_experiment, sample_data,
                                                            fake_scontrol, env_change, extra,
                                                            expected):
    env, calls = fake_scontrol
    model_dir = make_experiment()
    command = [sys.executable, "-m", "torchstarter", "train", "--model-dir", str(model_dir),
               "--data-dir", str(sample_data), "--requeue", *extra]
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**env, **env_change}, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr
    assert not (model_dir / "train.log").exists() and not calls.exists()


def test_under_torchrun_only_the_first_process_requeues(tmp_path, fake_scontrol):
    """sbatch --signal=B:TERM reaches torchrun, which passes SIGTERM to every process: all
    stop at the same step, the first saves, and the job is requeued once, not per process."""
    from test_distributed import TOKENS_TASK, make

    env, calls = fake_scontrol
    (tmp_path / "tokens.py").write_text(TOKENS_TASK)
    model_dir = make(tmp_path, "ddp", num_epochs=10_000)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "torchstarter", "train", "--data-dir",
               str(tmp_path), "--model-dir", str(model_dir), "--restore", "auto", "--requeue"]
    code, out = start_and_signal(command, env, model_dir, signal.SIGTERM)
    assert code != 0, out
    assert calls.read_text().splitlines() == [f"requeue {JOB}"], out
    assert out.count(f"requeued SLURM job {JOB}") == 1
    assert load_checkpoint(model_dir / "last.pt")["epoch"] >= 1
