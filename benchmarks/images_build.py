"""The images task at scale: build 10,000 generated 256x256 pictures, then train on them.

1. Writes N pictures (10 classes of shapes and colours, 256x256, half JPEG, half PNG, a
   tenth grayscale, a tenth non-square) as class folders under a cache folder, once.
2. Times `torchstarter build-dataset --task images --image-size 64` in a child process
   and reads the child's peak resident memory (getrusage of children).
3. Trains the SIGNS network at 64x64 on the built data for one epoch with `torchstarter
   train`, and the same network on the same tensors with a plain PyTorch loop (Adam,
   batch 32, shuffled, one val pass), alternating plain and torchstarter; prints seconds
   per epoch and the ratio.

    python benchmarks/images_build.py [--count 10000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import machine_line
from PIL import Image, ImageDraw

from torchstarter.experiment.training import train
from torchstarter.tasks import load_task
from torchstarter.tasks.registry import load_experiment

PARAMS = {"task": "images", "learning_rate": 1e-3, "optimizer": "adam", "batch_size": 32,
          "num_epochs": 1, "num_channels": 32, "dropout_rate": 0.5, "augmentation": False,
          "seed": 230, "tensorboard": False, "num_threads": 2}


def generate(root: Path, count: int) -> Path:
    """count pictures in 10 class folders; kept between runs (a marker says complete)."""
    done = root / f".complete-{count}"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        label = i % 10
        size = (256, 192) if i % 10 == 3 else (256, 256)
        background = tuple(int(v) for v in rng.integers(0, 256, 3))
        img = Image.new("RGB", size, background)
        draw = ImageDraw.Draw(img)
        color = ((label * 25) % 256, 255 - label * 20, (label * 70) % 256)
        x, y = rng.integers(20, 120, 2)
        box = [int(x), int(y), int(x) + 60 + label * 6, int(y) + 60 + label * 6]
        (draw.ellipse if label % 2 else draw.rectangle)(box, fill=color)
        noise = rng.integers(-12, 13, (size[1], size[0], 3))
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255)
                              .astype(np.uint8))
        if i % 10 == 7:
            img = img.convert("L")
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"{i:05d}.{'jpg' if i % 2 else 'png'}", quality=90)
    done.touch()
    return root


def build(raw: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak MiB) of a build-dataset child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "torchstarter", "build-dataset", "--task", "images",
                    "--data-dir", str(raw), "--output-dir", str(out), "--overwrite",
                    "--image-size", "64"], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("note: peak memory not above an earlier child's; the figure is a lower bound")
    return seconds, peak / 1024


def plain_epoch(data_dir: Path) -> float:
    """One epoch and a val pass written by hand; the tensors are decoded before timing."""
    folder = Path(tempfile.mkdtemp())
    (folder / "params.json").write_text(json.dumps(PARAMS))
    task, params = load_experiment(folder / "params.json")
    info = task.describe_data(params, data_dir)
    train_data = task.load_split(params, data_dir, "train", info)
    val_data = task.load_split(params, data_dir, "val", info)
    torch.set_num_threads(params.num_threads)  # the threads torchstarter is told to use
    torch.manual_seed(230)
    model = task.build_model(params, info)
    opt = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
    started = time.perf_counter()
    model.train()
    for idx in torch.randperm(len(train_data.labels)).split(params.batch_size):
        loss = F.cross_entropy(model(train_data.inputs[idx]), train_data.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for x in val_data.inputs.split(params.batch_size):
            model(x).argmax(1)
    return time.perf_counter() - started


def torchstarter_epoch(data_dir: Path) -> tuple[float, float]:
    """(seconds of the epoch as train.log's epoch line counts it, whole train call)."""
    model_dir = Path(tempfile.mkdtemp(prefix="bench-images-"))
    (model_dir / "params.json").write_text(json.dumps(PARAMS))
    started = time.perf_counter()
    trainer = train(model_dir, data_dir, console=False)
    whole = time.perf_counter() - started
    epoch = trainer.history[-1].get("seconds", float("nan"))
    shutil.rmtree(model_dir)
    return epoch, whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "torchstarter-bench-images")
    args = parser.parse_args()
    print(machine_line())
    started = time.perf_counter()
    raw = generate(args.cache / "raw", args.count)
    print(f"generated {args.count} pictures in {time.perf_counter() - started:.0f}s "
          f"(cached in {raw})")
    out = Path(tempfile.mkdtemp(prefix="images64-")) / "data"
    seconds, peak = build(raw, out)
    report = json.loads((out / "build_report.json").read_text())
    counts = {s: report["splits"][s]["images"] for s in ("train", "val", "test")}
    print(f"build-dataset: {seconds:.1f}s for {args.count} images "
          f"({1000 * seconds / args.count:.2f} ms each), peak {peak:.0f} MiB; splits {counts}")
    load_task("images")  # imports outside the timings
    plain, ours, whole = [], [], []
    for rep in range(args.repeats):
        plain.append(plain_epoch(out))
        epoch, total = torchstarter_epoch(out)
        ours.append(epoch)
        whole.append(total)
        print(f"  repeat {rep + 1}: plain {plain[-1]:.1f}s, torchstarter epoch {epoch:.1f}s "
              f"(whole train call {total:.1f}s)", flush=True)
    p, o, w = min(plain), min(ours), min(whole)
    print(f"one epoch at 64x64, SIGNS network, batch 32: plain loop {p:.1f}s, torchstarter "
          f"{o:.1f}s (ratio {o / p:.3f}); whole `train` call {w:.1f}s incl. decoding "
          f"{counts['train'] + counts['val']} PNGs, checkpoints and history")


if __name__ == "__main__":
    main()
