"""A training step never waits for the device: no value is read back per step.

On a GPU every .item(), bool(), int() or float() of a device tensor (and every op whose
output size depends on the data, such as nonzero) stops the host until the GPU has
caught up, and a step that does so runs at the speed of its launches plus a round trip.
These tests run an epoch on the CPU under a dispatch mode that records where such reads
happen. The only reads allowed are the NER batch width (taken from lengths that stay on
the host) and the NaN check, which on a GPU runs every save_summary_steps.
"""

from __future__ import annotations

import collections
import traceback
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from torchstarter.engine.build import build_trainer
from torchstarter.engine.rng import seed_everything
from torchstarter.tasks import load_task
from torchstarter.tasks.registry import resolve_params

SRC = Path(__file__).resolve().parents[1] / "src" / "torchstarter"
READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
         torch.ops.aten.masked_select.default, torch.ops.aten._unique2.default,
         torch.ops.aten.unique_consecutive.default}


class HostReads(TorchDispatchMode):
    """Counts reads of tensor values by the torchstarter function that caused them."""

    def __init__(self) -> None:
        super().__init__()
        self.where: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in READS:
            ours = [f for f in traceback.extract_stack() if f.filename.startswith(str(SRC))]
            where = f"{Path(ours[-1].filename).relative_to(SRC)}:{ours[-1].name}" if ours \
                else "outside torchstarter"
            self.where[where] += 1
        return func(*args, **(kwargs or {}))


def epoch_reads(tmp_path: Path, task_name: str, **params) -> tuple[int, dict[str, int]]:
    task = load_task(task_name)
    task.write_sample_data(tmp_path / "raw")
    task.build_dataset(task.build_options(tmp_path / "raw", tmp_path / "data"))
    if task.provides("build_vocab"):
        task.build_vocab(task.vocab_options(tmp_path / "data", min_count=1))
    _, p = resolve_params({"task": task_name, "learning_rate": 1e-3, "batch_size": 4,
                           "num_epochs": 1, "save_summary_steps": 10, **params}, "test")
    info = task.describe_data(p, tmp_path / "data")
    seed_everything(p.seed)
    split = task.load_split(p, tmp_path / "data", "train", info)
    trainer = build_trainer(task, p, torch.device("cpu"), info, train_data=split)
    trainer.check_every = p.save_summary_steps  # as on a GPU
    with HostReads() as reads:
        trainer.train_epoch(split, 1)
    steps = -(-len(split) // p.batch_size)
    return steps, dict(reads.where)


NAN_CHECK = "engine/trainer.py:train_step"  # bool(torch.isfinite(mean_loss))
NER_WIDTH = "tasks/ner/data.py:_batch"  # int(self.lengths_cpu[host_index].max())


@pytest.mark.parametrize("params", [
    {"num_channels": 4}, {"num_channels": 4, "precision": "bf16"},
    {"num_channels": 4, "precision": "fp16"},
    {"num_channels": 4, "accumulation_steps": 3, "ema_decay": 0.99, "ema_warmup": True,
     "scheduler": "onecycle", "label_smoothing": 0.1, "class_weights": "balanced"},
    {"num_channels": 4, "warmup_steps": 5, "scheduler": "cosine",
     "scheduler_interval": "step", "grad_clip_norm": 1.0, "accumulation_steps": 2}])
def test_signs_steps_read_nothing_but_the_periodic_nan_check(tmp_path, params):
    steps, reads = epoch_reads(tmp_path, "signs", **params)
    # fp16 included: the scaler hands its inf flag to the fused Adam kernel, never to us.
    assert reads.pop(NAN_CHECK, 0) == steps // 10
    assert reads == {}


@pytest.mark.parametrize("params", [
    {}, {"bucket_by_length": True, "pad_to_multiple": 8},
    {"bidirectional": True, "num_layers": 2, "dropout": 0.2}])
def test_ner_steps_read_only_host_lengths_and_the_periodic_nan_check(tmp_path, params):
    steps, reads = epoch_reads(tmp_path, "ner", **params)
    assert reads.pop(NAN_CHECK, 0) == steps // 10
    assert reads.pop(NER_WIDTH, 0) == steps  # lengths_cpu: a host tensor, even on a GPU
    if params.get("bidirectional"):
        # Packing reads the batch's host-side lengths; test_ner_masking proves these are
        # never the device copy (a device tensor that refuses host reads goes through).
        assert reads.pop("tasks/ner/net.py:_lstm", 0) == 2 * steps
    assert reads == {}


def test_a_crf_reads_its_underflow_checks_and_nothing_else(tmp_path):
    """The CRF checks once per pass whether its fast sums underflowed (see crf.py):
    three reads a step (forward and backward recursions, and Viterbi for the metrics)."""
    steps, reads = epoch_reads(tmp_path, "ner", crf=True)
    assert reads.pop(NAN_CHECK, 0) == steps // 10
    assert reads.pop(NER_WIDTH, 0) == steps
    crf = {where: n for where, n in reads.items() if where.startswith("tasks/ner/crf.py")}
    assert sum(crf.values()) == 3 * steps
    assert reads.keys() == crf.keys()


class Copies(TorchDispatchMode):
    """Counts copies onto the meta device, which stands in for a GPU here."""

    def __init__(self) -> None:
        super().__init__()
        self.to_device = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default) and \
                isinstance(out, torch.Tensor) and out.device.type == "meta" and \
                any(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in args):
            self.to_device += 1
        return out


def test_a_pass_sends_its_batch_indices_to_the_device_in_one_copy():
    from torchstarter.engine.batching import TensorData, batch_groups, iterate_groups
    from torchstarter.tasks.ner.data import TokenData

    lengths = torch.randint(1, 9, (23,), generator=torch.Generator().manual_seed(0))
    meta = torch.device("meta")
    words = torch.zeros(23, 8, dtype=torch.long, device=meta)
    tokens = TokenData(words, words.clone(), lengths)  # keeps its host copy of lengths
    tokens.lengths = lengths.to(meta)
    splits = [TensorData(torch.zeros(23, 3, device=meta), torch.zeros(23, device=meta)), tokens]
    for data in splits:
        groups = batch_groups(data, torch.randperm(23), 4)
        with Copies() as copies:
            batches = list(iterate_groups(data, groups, meta))
        assert len(batches) == 6 and copies.to_device == 1
        assert [len(b[1]) for b in batches] == [len(g) for g in groups]
