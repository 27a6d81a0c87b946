"""SIGNS training speed: torchstarter's `train` against a minimal plain-PyTorch loop.

Both train the same network on the same in-memory uint8 tensors with the reference
params (Adam 1e-3, batch 32, 10 epochs, random horizontal flips), one val pass per
epoch, on the same number of threads. torchstarter's time is its whole `train` call:
decoding the images, the loop, checkpoints, metrics and history files included.
Runs alternate (plain, torchstarter, plain, ...) and the median of --repeats is kept.

    python benchmarks/signs_speed.py [--raw ../shared/data/SIGNS] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import SHARED_SIGNS, build_signs, machine_line
from tabulate import tabulate

from torchstarter.engine.threads import usable_cores
from torchstarter.experiment.training import train
from torchstarter.tasks.registry import load_experiment

REFERENCE = json.loads((Path(__file__).resolve().parents[1] / "experiments" / "signs" /
                        "base_model" / "params.json").read_text())


def plain_loop(data_dir: Path, epochs: int, threads: int, channels_last: bool,
               bf16: bool) -> float:
    """The loop a user would write by hand; data decoding is not timed (done before)."""
    torch.set_num_threads(threads)
    params_dir = Path(tempfile.mkdtemp())
    (params_dir / "params.json").write_text(json.dumps(REFERENCE))
    task, params = load_experiment(params_dir / "params.json")
    train_data = task.load_split(params, data_dir, "train", None)
    val_data = task.load_split(params, data_dir, "val", None)
    torch.manual_seed(230)
    model = task.build_model(params, None)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
    x_train, y_train = train_data.inputs, train_data.labels
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y_train)).split(params.batch_size):
            x, y = x_train[idx], y_train[idx]
            flip = torch.rand(len(y)) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x).contiguous(memory_format=fmt)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in zip(val_data.inputs.split(params.batch_size),
                            val_data.labels.split(params.batch_size), strict=True):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    correct += (model(x.contiguous(memory_format=fmt)).argmax(1) == y).sum()
    return time.perf_counter() - started


def torchstarter_run(data_dir: Path, epochs: int, threads: int | None,
                     channels_last: bool | None, bf16: bool) -> float:
    model_dir = Path(tempfile.mkdtemp(prefix="bench-ts-"))
    if threads is None:  # what a fresh process starts with; an earlier variant changed it
        torch.set_num_threads(usable_cores())
    params = dict(REFERENCE, num_epochs=epochs, num_threads=threads,
                  channels_last=channels_last, precision="bf16" if bf16 else "fp32")
    (model_dir / "params.json").write_text(json.dumps(params))
    started = time.perf_counter()
    train(model_dir, data_dir, console=False)
    elapsed = time.perf_counter() - started
    shutil.rmtree(model_dir)
    return elapsed


VARIANTS = {  # name: (runner, threads, channels_last, bf16); None: torchstarter decides
    "torchstarter defaults (layout and threads decided here)": (torchstarter_run, None, None,
                                                                False),
    "plain fp32 NCHW, 2 threads": (plain_loop, 2, False, False),
    "torchstarter fp32 NCHW, 2 threads": (torchstarter_run, 2, False, False),
    "plain fp32 NCHW, 1 thread": (plain_loop, 1, False, False),
    "torchstarter fp32 NCHW, 1 thread": (torchstarter_run, 1, False, False),
    "plain fp32 channels_last, 2 threads": (plain_loop, 2, True, False),
    "torchstarter fp32 channels_last, 2 threads": (torchstarter_run, 2, True, False),
    "torchstarter bf16 NCHW, 2 threads": (torchstarter_run, 2, False, True),
    "torchstarter bf16 channels_last, 2 threads": (torchstarter_run, 2, True, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=SHARED_SIGNS, help="raw SIGNS folder")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None,
                        help="substrings of variant names to run (default: all)")
    args = parser.parse_args()
    data_dir = build_signs(args.raw)
    # A cache of its own: the first torchstarter-defaults run pays for the layout timing,
    # as a user's first run on a machine does.
    os.environ.setdefault("TORCHSTARTER_CACHE_DIR", tempfile.mkdtemp(prefix="bench-cache-"))
    chosen = {k: v for k, v in VARIANTS.items()
              if not args.only or any(s in k for s in args.only)}
    times: dict[str, list[float]] = {k: [] for k in chosen}
    plain_loop(data_dir, 1, 2, False, False)  # warm-up: thread pools, allocator
    for rep in range(args.repeats):
        for name, (runner, threads, cl, bf16) in chosen.items():
            times[name].append(runner(data_dir, args.epochs, threads, cl, bf16))
            print(f"  repeat {rep + 1}: {name}: {times[name][-1]:.2f}s", flush=True)
    base = statistics.median(times["plain fp32 NCHW, 2 threads"]) \
        if "plain fp32 NCHW, 2 threads" in times else None
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append([name, f"{med:.2f}", f"{min(ts):.2f}", f"{max(ts):.2f}",
                     f"{med / base:.3f}" if base else "-"])
    print(f"\nSIGNS, {args.epochs} epochs, reference params, {args.repeats} repeats; "
          f"{machine_line()}, {torch.backends.cpu.get_cpu_capability()}")
    print(tabulate(rows, headers=["variant", "median s", "min s", "max s",
                                  "ratio to plain fp32 NCHW 2 threads"]))
    plain = {k: statistics.median(v) for k, v in times.items() if k.startswith("plain fp32")}
    ours = [k for k in times if k.startswith("torchstarter defaults")]
    if plain and ours:
        best = min(plain, key=plain.get)
        print(f"torchstarter defaults / best plain loop ({best}): "
              f"{statistics.median(times[ours[0]]) / plain[best]:.3f}")


if __name__ == "__main__":
    main()
