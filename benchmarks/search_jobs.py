"""--jobs 2 against --jobs 1: wall time of the tutorial's three-trial learning-rate sweep.

Runs `torchstarter search` on experiments/signs/learning_rate (the base model's params,
learning rate 1e-4, 1e-3, 1e-2) in fresh parent folders, alternating --jobs 1 and
--jobs 2, on every core of the machine (OMP_NUM_THREADS is removed). It also reports s,
how much faster one trial trains on all cores than on one, because s bounds what
parallel trials can gain: with --jobs 2 on 2 cores the first two trials run on one
thread each and the third gets both cores once a slot frees up, so at best
(3 / s) / (1 + 1 / s) = 3 / (1 + s); even a perfect split of the work gives only 2 / s.

    python benchmarks/search_jobs.py [--raw ../shared/data/SIGNS] [--repeats 2]
    python benchmarks/search_jobs.py --sample --epochs 1 --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, SHARED_SIGNS, build_signs
from tabulate import tabulate

from torchstarter.tasks import load_task

SWEEP = REPO / "experiments" / "signs" / "learning_rate"


def sweep(data_dir: Path, parent: Path, jobs: int, epochs: int | None) -> float:
    parent.mkdir(parents=True)
    params = json.loads((SWEEP / "params.json").read_text())
    if epochs is not None:
        params["num_epochs"] = epochs
    (parent / "params.json").write_text(json.dumps(params, indent=2))
    shutil.copy(SWEEP / "search.json", parent / "search.json")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                              "MKL_NUM_THREADS")}
    command = [sys.executable, "-m", "torchstarter", "search", "--parent-dir", str(parent),
               "--data-dir", str(data_dir), "--jobs", str(jobs)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"search --jobs {jobs} failed ({result.returncode}):\n{result.stdout}\n"
                 f"{result.stderr}")
    return elapsed


def epoch_seconds(parent: Path) -> list[float]:
    """Seconds per epoch of trials that kept their starting thread count."""
    out = []
    for trial in sorted(p for p in parent.iterdir() if p.is_dir()):
        if "a slot is free" in (trial / "search_trial.log").read_text():
            continue  # its thread count changed midway
        out += [row["seconds"] for row in json.loads((trial / "history.json").read_text())]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=SHARED_SIGNS, help="raw SIGNS data")
    parser.add_argument("--sample", action="store_true",
                        help="use the built-in sample data instead (smoke run)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override num_epochs (default: the base model's 10)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="search-jobs-"))
    raw = args.raw
    if args.sample:
        raw = work / "raw"
        load_task("signs").write_sample_data(raw)
    data_dir = build_signs(raw)
    cores = len(os.sched_getaffinity(0))  # what search uses once OMP_NUM_THREADS is unset

    walls: dict[int, list[float]] = {1: [], 2: []}
    epochs: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for jobs in (1, 2):
            parent = work / f"jobs{jobs}-{repeat}" / "learning_rate"
            walls[jobs].append(sweep(data_dir, parent, jobs, args.epochs))
            epochs[jobs] += epoch_seconds(parent)
            print(f"repeat {repeat}: --jobs {jobs}: {walls[jobs][-1]:.1f} s", flush=True)

    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    print()
    print(tabulate([["--jobs 1", cores, one], ["--jobs 2", max(1, cores // 2), two]],
                   headers=["three-trial sweep", "threads per trial", "median wall s"],
                   floatfmt=".1f"))
    print(f"\n--jobs 2 is {one / two:.2f}x as fast as --jobs 1 on {cores} cores "
          f"({args.repeats} runs each{', sample data' if args.sample else ''})")
    if epochs[1] and epochs[2]:
        s = statistics.median(epochs[2]) / statistics.median(epochs[1])
        print(f"one epoch: {statistics.median(epochs[1]):.2f} s on {cores} threads alone, "
              f"{statistics.median(epochs[2]):.2f} s on 1 thread beside another trial: "
              f"s = {s:.2f}")
        print(f"ceilings for 3 equal trials on 2 slots (ignoring start-up): "
              f"{3 / (1 + s):.2f}x with threads handed over as search does, "
              f"{2 / s:.2f}x with a perfect split of the work")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(data_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
