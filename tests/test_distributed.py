"""torchrun with 2 CPU processes (gloo) gives the numbers of one process with the same
global batch: the shards, the loss weighting and the metric sums are exact, so only the
order of floating-point additions differs (weights agree to 1e-5, metrics to 1e-6)."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from test_cli_end_to_end import cli

from torchstarter.engine.checkpoint import load_checkpoint

# No batch norm and no dropout: both legitimately differ between 1 and 2 processes.
# The loss is a mean over a per-example count that varies, like NER's token mean, so the
# weighting of unequal shards is exercised; 101 examples leave a short last batch.
TOKENS_TASK = '''
import torch
from torch import nn
import torch.nn.functional as F

from torchstarter.engine.batching import TensorData

SCHEMA = {}
DEFAULT_METRIC = "accuracy"

def accuracy(logits, labels):
    return (logits.argmax(1) == labels).sum(), labels.numel()

METRICS = {"accuracy": accuracy}

def load_split(params, data_dir, split):
    gen = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
    labels = torch.randint(0, 3, (101,), generator=gen)
    inputs = torch.randn(101, 6, generator=gen) + 2.0 * F.one_hot(labels, 6).float()
    return TensorData(inputs, labels)

def build_model(params):
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))

def loss_fn(logits, labels):
    weights = labels.float() + 1.0  # a different "token count" per example
    total = (F.cross_entropy(logits, labels, reduction="none") * weights).sum()
    return total / weights.sum(), weights.sum()
'''


def make(tmp_path, name, **params):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps({
        "task": "../tokens.py", "learning_rate": 0.05, "batch_size": 16, "num_epochs": 3,
        "optimizer": "sgd", "momentum": 0.9, **params}))
    return folder


def torchrun(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", "2", "-m", "torchstarter", *map(str, args)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def assert_same_run(one, two):
    a = load_checkpoint(one / "last.pt")["model"]
    b = load_checkpoint(two / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)
    rows_a = json.loads((one / "history.json").read_text())
    rows_b = json.loads((two / "history.json").read_text())
    assert len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ra:
            if key.startswith(("train_", "val_")):
                assert ra[key] == pytest.approx(rb[key], abs=1e-6), key


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    (tmp_path / "tokens.py").write_text(TOKENS_TASK)
    one, two = make(tmp_path, "one"), make(tmp_path, "two")
    cli("train", "--data-dir", tmp_path, "--model-dir", one)
    out = torchrun("train", "--data-dir", tmp_path, "--model-dir", two)
    assert_same_run(one, two)
    log = (two / "train.log").read_text()
    assert "2 processes (DDP)" in log
    assert log.count("epoch 3/3") == 1  # only the first process writes
    assert out.stdout.count("epoch 1/3") == 1
    assert json.loads((two / "run.json").read_text())["status"] == "finished"


def test_two_processes_accumulating_micro_batches_match_one_big_batch(tmp_path):
    """Global batch 8 over 2 processes, 3 micro-batches a step: one process, batch 24.
    101 examples end on a group of one micro-batch; the EMA average is what is saved."""
    (tmp_path / "tokens.py").write_text(TOKENS_TASK)
    one = make(tmp_path, "one", batch_size=24, ema_decay=0.5)
    two = make(tmp_path, "two", batch_size=8, accumulation_steps=3, ema_decay=0.5)
    cli("train", "--data-dir", tmp_path, "--model-dir", one)
    torchrun("train", "--data-dir", tmp_path, "--model-dir", two)
    assert_same_run(one, two)
    assert load_checkpoint(two / "last.pt")["optimizer_steps"] == 3 * 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_loopback_match_one_process(tmp_path):
    """Two torchrun "nodes" of one process each (static rendezvous on 127.0.0.1), the
    model dir on a path both see, as on a cluster with a shared file system."""
    (tmp_path / "tokens.py").write_text(TOKENS_TASK)
    one, two = make(tmp_path, "one"), make(tmp_path, "two")
    cli("train", "--data-dir", tmp_path, "--model-dir", one)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = free_port()
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
         str(rank), "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port",
         str(port), "-m", "torchstarter", "train", "--data-dir", str(tmp_path),
         "--model-dir", str(two)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(outputs)
    assert_same_run(one, two)
    assert "2 processes (DDP)" in (two / "train.log").read_text()
    assert outputs[0].count("epoch 3/3") == 1 and "epoch 3/3" not in outputs[1]


def test_a_ddp_run_restores_and_continues(tmp_path):
    (tmp_path / "tokens.py").write_text(TOKENS_TASK)
    one, two = make(tmp_path, "one", num_epochs=4), make(tmp_path, "two", num_epochs=2)
    cli("train", "--data-dir", tmp_path, "--model-dir", one)
    torchrun("train", "--data-dir", tmp_path, "--model-dir", two)
    torchrun("train", "--data-dir", tmp_path, "--model-dir", two, "--restore", "last",
             "--set", "num_epochs=4")
    assert_same_run(one, two)


def test_a_val_split_smaller_than_the_process_count_gives_exact_metrics(tmp_path):
    """One process gets no val example; it reads nothing but still joins the sums."""
    tiny_val = TOKENS_TASK.replace(
        "    return TensorData(inputs, labels)",
        "    keep = 1 if split == 'val' else len(labels)\n"
        "    return TensorData(inputs[:keep], labels[:keep])")
    assert tiny_val != TOKENS_TASK
    (tmp_path / "tokens.py").write_text(tiny_val)
    one, two = make(tmp_path, "one", num_epochs=1, metric="loss"), \
        make(tmp_path, "two", num_epochs=1, metric="loss")
    cli("train", "--data-dir", tmp_path, "--model-dir", one)
    torchrun("train", "--data-dir", tmp_path, "--model-dir", two)
    assert_same_run(one, two)
    assert (two / "best.pt").exists()
