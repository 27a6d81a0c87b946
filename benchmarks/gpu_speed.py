"""GPU speed of both tasks: torchstarter's training epoch against a plain loop, same device.

For SIGNS (reference params, batch 32) and Kaggle NER (reference params at batch 5 and
64) it reports seconds per training epoch (median of the timed epochs, after a warm-up
epoch), samples per second, the ratio to a plain PyTorch loop on the same device with
the data already there, and the effect of each speed option (channels_last, bf16,
fp16, torch.compile "reduce-overhead", i.e. CUDA graphs, where shapes are static).
The issue's targets on one H100: SIGNS <= 0.05 s/epoch; NER batch 5 <= 10 s, batch 64
<= 1.5 s. Without the real data it falls back to the built-in samples (numbers then
say nothing about the targets). One command, about 3 minutes on an H100:

    python benchmarks/gpu_speed.py [--signs-raw DIR] [--ner-corpus ZIP] [--device cuda]
    python benchmarks/gpu_speed.py --device cpu --quick     # a smoke run of the script
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import REPO, SHARED_NER, SHARED_SIGNS, build_ner, build_signs
from tabulate import tabulate

from torchstarter.engine.batching import place
from torchstarter.engine.rng import seed_everything
from torchstarter.engine.trainer import Trainer
from torchstarter.tasks import load_task
from torchstarter.tasks.registry import resolve_params

SIGNS_REF = json.loads((REPO / "experiments/signs/base_model/params.json").read_text())
NER_REF = json.loads((REPO / "experiments/ner/base_model/params.json").read_text())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_epochs(run_epoch: Callable[[int], object], epochs: int, device: torch.device
                 ) -> float:
    run_epoch(1)  # warm-up: allocator, cuDNN autotuning, compilation
    times = []
    for epoch in range(2, epochs + 2):
        sync(device)
        started = time.perf_counter()
        run_epoch(epoch)
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sample_data(task_name: str) -> Path:
    task = load_task(task_name)
    root = Path(tempfile.mkdtemp(prefix=f"{task_name}-sample-"))
    task.write_sample_data(root / "raw")
    task.build_dataset(task.build_options(root / "raw", root / "data"))
    if task.build_vocab_command is not None:
        task.build_vocab_command(task.vocab_options(root / "data", min_count=1))
    return root / "data"


def torchstarter_epoch(base: dict, data_dir: Path, device: torch.device, **changes):
    task, params = resolve_params({**base, **changes, "device": device.type}, "benchmark")
    info = task.describe_data(params, data_dir) if task.describe_data else None
    seed_everything(params.seed)
    trainer = Trainer(task, params, device, info)
    train = place(task.read_split(params, data_dir, "train", info), device)
    return len(train), lambda epoch: trainer.train_epoch(train, epoch)


def plain_signs_epoch(data_dir: Path, device: torch.device):
    """What a user writes by hand: data on the device, flips, Adam, no metrics."""
    task, params = resolve_params({**SIGNS_REF, "device": device.type}, "benchmark")
    data = task.read_split(params, data_dir, "train", None)
    x_all, y_all = data.inputs.to(device), data.labels.to(device)
    seed_everything(230)
    model = task.build_model(params).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=params.learning_rate)

    def epoch(_: int) -> None:
        model.train()
        for idx in torch.randperm(len(y_all), device=device).split(params.batch_size):
            x, y = x_all[idx], y_all[idx]
            flip = torch.rand(len(y), device=device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return len(y_all), epoch


def plain_ner_epoch(data_dir: Path, device: torch.device, batch_size: int):
    """Padded tensors on the device, cut to each batch's longest sentence, masked loss."""
    task, params = resolve_params({**NER_REF, "batch_size": batch_size,
                                   "device": device.type}, "benchmark")
    info = task.describe_data(params, data_dir)
    data = place(task.read_split(params, data_dir, "train", info), device)
    seed_everything(230)
    model = task.build_model(params, info).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=params.learning_rate)

    def epoch(_: int) -> None:
        model.train()
        for idx in torch.randperm(len(data), device=device).split(batch_size):
            inputs, tags = data.get_batch(idx)
            emissions = model(inputs).emissions
            loss = F.cross_entropy(emissions.reshape(-1, emissions.shape[-1]),
                                   tags.reshape(-1), ignore_index=-1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return len(data), epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signs-raw", type=Path, default=SHARED_SIGNS)
    parser.add_argument("--ner-corpus", type=Path, default=SHARED_NER)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=5, help="timed SIGNS epochs")
    parser.add_argument("--quick", action="store_true",
                        help="sample data and one timed epoch: checks the script runs")
    args = parser.parse_args()
    device = torch.device(args.device)
    real = not args.quick
    signs_dir = build_signs(args.signs_raw) if real and args.signs_raw.exists() \
        else sample_data("signs")
    ner_dir = build_ner(args.ner_corpus) if real and args.ner_corpus.exists() \
        else sample_data("ner")
    signs_epochs = 1 if args.quick else args.epochs
    ner_epochs = 1 if args.quick else 2
    gpu = device.type == "cuda"
    cases = [  # (task, variant, batch, epochs, factory)
        ("signs", "plain loop, fp32", 32, signs_epochs,
         lambda: plain_signs_epoch(signs_dir, device)),
        ("signs", "torchstarter, fp32 NCHW", 32, signs_epochs,
         lambda: torchstarter_epoch(SIGNS_REF, signs_dir, device, channels_last=False)),
        ("signs", "+ channels_last (default)", 32, signs_epochs,
         lambda: torchstarter_epoch(SIGNS_REF, signs_dir, device)),
        ("signs", "+ bf16", 32, signs_epochs,
         lambda: torchstarter_epoch(SIGNS_REF, signs_dir, device, precision="bf16")),
        ("signs", "+ fp16 (loss scaling)", 32, signs_epochs,
         lambda: torchstarter_epoch(SIGNS_REF, signs_dir, device, precision="fp16")),
    ]
    if gpu:
        cases.append(("signs", "+ bf16 + compile reduce-overhead", 32, signs_epochs,
                      lambda: torchstarter_epoch(SIGNS_REF, signs_dir, device,
                                                 precision="bf16",
                                                 compile="reduce-overhead")))
    for batch in (5, 64):
        cases += [
            ("ner", "plain loop, fp32", batch, ner_epochs,
             lambda b=batch: plain_ner_epoch(ner_dir, device, b)),
            ("ner", "torchstarter, fp32", batch, ner_epochs,
             lambda b=batch: torchstarter_epoch(NER_REF, ner_dir, device, batch_size=b)),
            ("ner", "+ bucket_by_length", batch, ner_epochs,
             lambda b=batch: torchstarter_epoch(NER_REF, ner_dir, device, batch_size=b,
                                                bucket_by_length=True)),
        ]
    rows, plain = [], {}
    for task, variant, batch, epochs, factory in cases:
        n, run_epoch = factory()
        seconds = timed_epochs(run_epoch, epochs, device)
        if variant.startswith("plain"):
            plain[(task, batch)] = seconds
        base = plain.get((task, batch))
        rows.append([task, variant, batch, f"{seconds:.3f}", f"{n / seconds:,.0f}",
                     f"{seconds / base:.2f}" if base else "-"])
        print("  ", rows[-1], flush=True)
    name = torch.cuda.get_device_name(device) if gpu else "CPU"
    print(f"\n{name}, torch {torch.__version__}, "
          f"{'real data' if real else 'built-in samples (not comparable to targets)'}")
    print(tabulate(rows, headers=["task", "variant", "batch", "s / train epoch",
                                  "samples/s", "time vs plain loop"]))


if __name__ == "__main__":
    main()
