"""SIGKILL `torchstarter train` at random moments, resume each time, compare the end result.

One run trains uninterrupted. Another is started, killed with SIGKILL after a random
delay, restarted with --restore last (or afresh when no epoch finished yet), and so on
until it completes, with at least --kills kills. After every kill, each file the run has
written must be readable: last.pt and best.pt load, the JSON files parse. At the end the
weights of both runs must be identical (torch.equal).

    python tools/kill_stress.py [--kills 50] [--epochs 6] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from torchstarter.engine.checkpoint import load_checkpoint
from torchstarter.tasks import load_task

PARAMS = {"task": "signs", "learning_rate": 1e-3, "batch_size": 32, "num_channels": 4,
          "dropout_rate": 0.5, "scheduler": "cosine"}


def train_command(data: Path, model_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torchstarter", "train", "--data-dir", str(data),
            "--model-dir", str(model_dir), *extra]


def check_files(model_dir: Path) -> None:
    """Everything on disk after a kill must be whole."""
    for name in ("last.pt", "best.pt"):
        if (model_dir / name).exists():
            load_checkpoint(model_dir / name)
    for name in ("history.json", "metrics_val_best_weights.json",
                 "metrics_val_last_weights.json", "resolved_params.json"):
        if (model_dir / name).exists():
            json.loads((model_dir / name).read_text())


def run_stress(kills: int, epochs: int, seed: int, workdir: Path) -> dict[str, int | bool]:
    rng = random.Random(seed)
    task = load_task("signs")
    task.write_sample_data(workdir / "raw")
    data = workdir / "data"
    task.build_dataset(task.build_options(workdir / "raw", data))
    dirs = {}
    for name in ("straight", "killed"):
        dirs[name] = workdir / name
        dirs[name].mkdir()
        (dirs[name] / "params.json").write_text(json.dumps({**PARAMS, "num_epochs": epochs}))

    started = time.perf_counter()
    subprocess.run(train_command(data, dirs["straight"]), check=True, capture_output=True)
    full_run = time.perf_counter() - started

    counts = {"kills": 0, "restarts": 0, "kills_with_checkpoint": 0, "kills_mid_write": 0}
    while True:
        model_dir = dirs["killed"]
        extra = ("--restore", "last") if (model_dir / "last.pt").exists() else ("--overwrite",)
        proc = subprocess.Popen(train_command(data, model_dir, *extra),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        counts["restarts"] += 1
        if counts["kills"] < kills:
            try:
                proc.wait(timeout=rng.uniform(0.5, full_run))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                counts["kills"] += 1
                counts["kills_with_checkpoint"] += (model_dir / "last.pt").exists()
                counts["kills_mid_write"] += any(p.suffix in (".tmp", ".link")
                                                 for p in model_dir.glob(".*"))
                check_files(model_dir)
                continue
        err = proc.communicate()[1].decode()
        if proc.returncode != 0:
            raise SystemExit(f"a restart failed (exit {proc.returncode}): {err.strip()}")
        if counts["kills"] >= kills:
            break
    a = load_checkpoint(dirs["straight"] / "last.pt")["model"]
    b = load_checkpoint(dirs["killed"] / "last.pt")["model"]
    counts["identical_weights"] = a.keys() == b.keys() and all(torch.equal(a[k], b[k])
                                                               for k in a)
    counts["leftover_temp_files"] = len([p for p in dirs["killed"].glob(".*")
                                         if p.suffix in (".tmp", ".link")])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kill-stress-") as tmp:
        counts = run_stress(args.kills, args.epochs, args.seed, Path(tmp))
    print(json.dumps(counts))
    if not counts["identical_weights"]:
        raise SystemExit("killed-and-resumed weights differ from the uninterrupted run")


if __name__ == "__main__":
    main()
