"""NER training speed at batch 5: torchstarter against a loop written like the reference.

The baseline does what the reference implementation does each step: it pads the batch's
sentences into a numpy array (to the longest one), makes tensors of it, and updates all
weights, the 1.5M-weight embedding included, with torch's default (for-loop) Adam on
dense gradients. Both train the same network (embedding 50, LSTM 50, linear) with the
reference params on the Kaggle train split for one epoch, then report val token accuracy
and entity F1 measured the same way. torchstarter's epoch also computes its exact
per-epoch metrics (token accuracy and entity counts) on every step.

    python benchmarks/ner_speed.py [--corpus ../shared/data/kaggle_ner/ner_dataset.csv.zip]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import REPO, SHARED_NER, build_ner
from tabulate import tabulate

from torchstarter.engine.build import build_trainer
from torchstarter.engine.rng import seed_everything
from torchstarter.engine.trainer import Trainer
from torchstarter.tasks.ner.corpus import read_split
from torchstarter.tasks.ner.data import Encoder
from torchstarter.tasks.registry import resolve_params

REFERENCE = json.loads((REPO / "experiments/ner/base_model/params.json").read_text())


def make_trainer(data_dir: Path, **changes):
    task, params = resolve_params({**REFERENCE, **changes}, "benchmark")
    info = task.describe_data(params, data_dir)
    seed_everything(params.seed)
    trainer = build_trainer(task, params, torch.device("cpu"), info)
    return task, params, info, trainer


def baseline_epoch(data_dir: Path, trainer: Trainer, info: dict) -> float:
    """Reference-style: python lists, numpy padding per batch, dense for-loop Adam."""
    enc = Encoder(info)
    sentences = [(enc.words(t), enc.tags(g, "train")) for t, g in read_split(data_dir / "train")]
    model = trainer.model
    optimizer = torch.optim.Adam(model.parameters(), lr=REFERENCE["learning_rate"])
    order = list(range(len(sentences)))
    random.Random(230).shuffle(order)
    model.train()
    started = time.perf_counter()
    for start in range(0, len(order), 5):
        batch = [sentences[i] for i in order[start:start + 5]]
        width = max(len(w) for w, _ in batch)
        words = np.zeros((len(batch), width), dtype=np.int64)
        labels = -np.ones((len(batch), width), dtype=np.int64)
        for row, (w, g) in enumerate(batch):
            words[row, :len(w)] = w
            labels[row, :len(g)] = g
        words_t, labels_t = torch.from_numpy(words), torch.from_numpy(labels)
        lengths = torch.tensor([len(w) for w, _ in batch])
        emissions = model({"words": words_t, "lengths": lengths}).emissions
        loss = F.cross_entropy(emissions.reshape(-1, emissions.shape[-1]),
                               labels_t.reshape(-1), ignore_index=-1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


class SparseThenDense:
    """Lazy Adam on a sparse-gradient embedding, Adam on the rest (not in the engine)."""

    def __init__(self, model: torch.nn.Module):
        model.embedding.sparse = True
        rest = [p for n, p in model.named_parameters() if not n.startswith("embedding.")]
        self.parts = [torch.optim.SparseAdam([model.embedding.weight], lr=1e-3),
                      torch.optim.Adam(rest, lr=1e-3, fused=True)]
        self.param_groups = self.parts[1].param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none)

    def step(self) -> None:
        for part in self.parts:
            part.step()


def run(data_dir: Path, name: str, threads: int, changes: dict, rows: list) -> None:
    torch.set_num_threads(threads)
    optimizer = changes.pop("optimizer_override", None)
    task, params, info, trainer = make_trainer(data_dir, **changes)
    if optimizer == "for-loop":
        trainer.optimizer = torch.optim.Adam(trainer.model.parameters(), lr=1e-3)
    elif optimizer == "sparse":
        trainer.optimizer = SparseThenDense(trainer.model)
    train = task.load_split(params, data_dir, "train", info)
    val = task.load_split(params, data_dir, "val", info)
    if name.startswith("baseline"):
        seconds = baseline_epoch(data_dir, trainer, info)
    else:
        started = time.perf_counter()
        trainer.train_epoch(train, 1)
        seconds = time.perf_counter() - started
    started = time.perf_counter()
    metrics = trainer.evaluate(val)
    val_seconds = time.perf_counter() - started
    rows.append([name, threads, f"{seconds:.1f}", f"{len(train) / seconds:.0f}",
                 f"{metrics['accuracy']:.4f}", f"{metrics['f1']:.4f}", f"{val_seconds:.1f}"])
    print(f"  {rows[-1]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=SHARED_NER)
    args = parser.parse_args()
    data_dir = build_ner(args.corpus)
    rows: list = []
    variants = [
        ("baseline: numpy padding per batch, dense for-loop Adam", 2, {}),
        ("torchstarter (fused Adam, pre-built tensors)", 2, {}),
        ("torchstarter, 1 thread", 1, {}),
        ("torchstarter with for-loop Adam (as baseline)", 2,
         {"optimizer_override": "for-loop"}),
        ("torchstarter + sparse embedding grads, lazy Adam", 2,
         {"optimizer_override": "sparse"}),
        ("torchstarter + bucket_by_length", 2, {"bucket_by_length": True}),
    ]
    for name, threads, changes in variants:
        run(data_dir, name, threads, changes, rows)
    base = float(rows[0][2])
    for row in rows:
        row.insert(3, f"{base / float(row[2]):.2f}x")
    print(f"\nKaggle NER, one training epoch at batch 5 (33,571 sentences), "
          f"torch {torch.__version__}")
    print(tabulate(rows, headers=["variant", "threads", "train s", "speed-up",
                                  "sentences/s", "val token acc", "val entity F1",
                                  "val pass s"]))


if __name__ == "__main__":
    main()
