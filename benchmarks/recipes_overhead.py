"""What a training recipe costs per step when it is on: EMA first (target under 3%).

One process, two (or more) trainers of the same experiment, each timed over the same
batches in turn A B B A ... so that a machine that slows down favours neither:
  signs  reference params (batch 32), whole epochs of the real SIGNS train split
  ner    reference params (batch 5), the first --ner-steps steps of the Kaggle train split
The ratio is (recipe on) / (off), median over the rounds.

    python benchmarks/recipes_overhead.py [--rounds 6] [--only signs] [--variant ema ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from _common import REPO, SHARED_NER, SHARED_SIGNS, build_ner, build_signs, cpu_model

from torchstarter.engine.batching import batch_groups, epoch_order, iterate_groups, place
from torchstarter.engine.build import build_trainer
from torchstarter.engine.metrics import MetricTotals
from torchstarter.engine.rng import epoch_generator, seed_everything
from torchstarter.engine.trainer import micro_at
from torchstarter.tasks.registry import resolve_params

VARIANTS = {
    "off": {},
    "ema": {"ema_decay": 0.999},
    "ema_every_10": {"ema_decay": 0.999, "ema_every": 10},
    "accumulation_2": {"accumulation_steps": 2},
    "onecycle": {"scheduler": "onecycle"},
    "label_smoothing": {"label_smoothing": 0.1},
}
PARAMS = {"signs": REPO / "experiments/signs/base_model/params.json",
          "ner": REPO / "experiments/ner/base_model/params.json"}


def make(kind: str, data_dir, extra: dict):
    raw = {**json.loads(PARAMS[kind].read_text()), "num_threads": 2, **extra}
    if kind == "signs":
        raw["channels_last"] = True  # as the layout timing picks on this AMD machine
    task, params = resolve_params(raw, "benchmark")
    info = task.describe_data(params, data_dir)
    train = place(task.load_split(params, data_dir, "train", info), torch.device("cpu"))
    seed_everything(params.seed)
    trainer = build_trainer(task, params, torch.device("cpu"), info, train_data=train)
    return trainer, train


def timed_steps(trainer, train, steps: int | None, epoch: int) -> float:
    """Seconds for the epoch's first `steps` micro-batches (all of them for None)."""
    p = trainer.params
    groups = batch_groups(train, epoch_order(len(train), p.seed, epoch, True), p.batch_size)
    groups = groups[:steps] if steps else groups
    k = p.accumulation_steps
    totals = MetricTotals(trainer.task.metrics, torch.device("cpu"))
    augment = epoch_generator(p.seed, epoch, 7, torch.device("cpu"))
    trainer.train_model.train()
    started = time.perf_counter()
    for step, (inputs, labels) in enumerate(iterate_groups(train, groups, trainer.device),
                                            start=1):
        micro = micro_at(step, k, len(groups))
        trainer.train_step(inputs, labels, totals, augment, False, epoch, step, micro)
    totals.compute()  # waits for the last step's work
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--only", choices=sorted(PARAMS), action="append", default=None)
    parser.add_argument("--variant", choices=sorted(set(VARIANTS) - {"off"}),
                        action="append", default=None, help="default: ema")
    parser.add_argument("--ner-steps", type=int, default=1500)
    args = parser.parse_args()
    kinds, variants = args.only or sorted(PARAMS), args.variant or ["ema"]
    torch.set_num_threads(2)
    print(f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"{args.rounds} rounds", flush=True)
    for kind in kinds:
        data = build_signs(SHARED_SIGNS) if kind == "signs" else build_ner(SHARED_NER)
        steps = None if kind == "signs" else args.ner_steps
        for variant in variants:
            if kind == "ner" and variant == "label_smoothing":
                continue  # a classification option
            (off, train), (on, _) = make(kind, data, {}), make(kind, data, VARIANTS[variant])
            timed_steps(off, train, steps, 1), timed_steps(on, train, steps, 1)  # warm-up
            times: dict[str, list[float]] = {"off": [], "on": []}
            for round_ in range(args.rounds):
                order = [("off", off), ("on", on)]
                for name, trainer in order if round_ % 2 == 0 else order[::-1]:
                    times[name].append(timed_steps(trainer, train, steps, round_ + 2))
            ratios = [b / a for a, b in zip(times["off"], times["on"], strict=True)]
            print(f"{kind} {variant}: off median {statistics.median(times['off']):.3f}s, "
                  f"on median {statistics.median(times['on']):.3f}s; on/off "
                  f"{statistics.median(times['on']) / statistics.median(times['off']):.3f} "
                  f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})", flush=True)


if __name__ == "__main__":
    main()
