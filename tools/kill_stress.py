"""SIGKILL `torchstarter train` at random moments, resume each time, compare the end result.

One run trains uninterrupted. Another is started, killed with SIGKILL after a random
delay, restarted with --restore last (or afresh when no epoch finished yet), and so on
until it completes, with at least --kills kills; every third kill waits for a checkpoint
write to start and strikes inside it. After every kill, each file the run has
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

# Threads pinned: with the default the count follows the machine's load, and float sums
# depend on it, so two runs on a busy machine would differ in their last digits anyway.
PARAMS = {"task": "signs", "learning_rate": 1e-3, "batch_size": 32, "num_channels": 4,
          "dropout_rate": 0.5, "scheduler": "cosine", "num_threads": 1}


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


def wait_for_write(proc: subprocess.Popen, model_dir: Path, deadline: float) -> bool:
    """Poll until the run has a checkpoint temp file open; False if it ends first."""
    end = time.perf_counter() + deadline
    while proc.poll() is None and time.perf_counter() < end:
        if any(p.name.startswith(".last.pt.") for p in model_dir.iterdir()):
            return True
        time.sleep(0.0005)
    return False


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
    model_dir = dirs["killed"]
    counts["completed_runs"], identical, fresh = 0, True, False
    while True:
        resume = (model_dir / "last.pt").exists() and not fresh
        extra = ("--restore", "last") if resume else ("--overwrite",)
        fresh = False
        proc = subprocess.Popen(train_command(data, model_dir, *extra),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        counts["restarts"] += 1
        if counts["kills"] < kills:
            # Every third kill waits for a checkpoint write to begin and strikes inside it.
            at_write = counts["kills"] % 3 == 2
            if at_write and wait_for_write(proc, model_dir, deadline=full_run * 2):
                proc.kill()
                proc.wait()
                counts["kills"] += 1
                counts["kills_mid_write"] += 1
                check_files(model_dir)
                continue
            try:
                proc.wait(timeout=0.01 if at_write else rng.uniform(0.5, full_run))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                counts["kills"] += 1
                counts["kills_with_checkpoint"] += (model_dir / "last.pt").exists()
                counts["kills_mid_write"] += any(p.name.startswith(".last.pt.")
                                                 for p in model_dir.iterdir())
                check_files(model_dir)
                continue
        err = proc.communicate()[1].decode()
        if proc.returncode != 0:
            raise SystemExit(f"a restart failed (exit {proc.returncode}): {err.strip()}")
        # The run reached its last epoch: compare, then start a new cycle if kills remain.
        a = load_checkpoint(dirs["straight"] / "last.pt")["model"]
        b = load_checkpoint(model_dir / "last.pt")["model"]
        identical &= a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        counts["completed_runs"] += 1
        if counts["kills"] >= kills:
            break
        fresh = True
    counts["identical_weights"] = identical
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
