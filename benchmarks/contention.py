"""Training on a busy machine: alone, beside a process spinning on one core, and two at once.

Each measurement is a fresh `python -m torchstarter` process on the real data:
  ner    one training epoch at batch 5 (experiments/ner/base_model params)
  signs  the reference run (experiments/signs/base_model: 10 epochs, batch 32)
  pair   two SIGNS 3-epoch trainings started together, against one alone
  search `search --jobs 2` over two SIGNS 3-epoch trials, against one trial alone
"fixed" pins the thread count to the usable cores (OMP_NUM_THREADS), which is what
torchstarter did before its thread governor; "default" is today's default (num_threads
null: the governor follows the load). Fixed and default runs alternate, so a machine
that slows down over time favours neither. Ratios are printed; the targets are
beside-the-spinner/alone <= 2.5, pair/alone <= 2.5, and default alone no slower than
fixed alone.

    python benchmarks/contention.py [--only ner signs pair search] [--signs-epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _common import REPO, SHARED_NER, SHARED_SIGNS, build_ner, build_signs, machine_line

from torchstarter.engine.threads import usable_cores

QUIET = {"tensorboard": False, "plots": False}


def params_of(name: str, **changes: object) -> dict:
    path = REPO / "experiments" / name / "base_model" / "params.json"
    return {**json.loads(path.read_text()), **QUIET, **changes}


def env_for(mode: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if mode == "fixed":
        env["OMP_NUM_THREADS"] = str(usable_cores())
    return env


def start_train(data: Path, params: dict, mode: str) -> subprocess.Popen:
    model_dir = Path(tempfile.mkdtemp(prefix="contention-"))
    (model_dir / "params.json").write_text(json.dumps(params))
    return subprocess.Popen([sys.executable, "-m", "torchstarter", "train", "--data-dir",
                             str(data), "--model-dir", str(model_dir)], env=env_for(mode),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a training failed ({proc.returncode}): {err[-2000:]}")


def timed(*starts: Callable[[], subprocess.Popen]) -> float:
    """Wall seconds from starting the processes together until the last one ends."""
    begin = time.perf_counter()
    wait_all([start() for start in starts])
    return time.perf_counter() - begin


class Spinner:
    """A process that keeps one core busy, as a compile or another user's job would."""

    def __enter__(self) -> Spinner:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def alone_and_beside(name: str, data: Path, params: dict, rows: list) -> None:
    for mode in ("fixed", "default"):
        alone = timed(partial(start_train, data, params, mode))
        with Spinner():
            beside = timed(partial(start_train, data, params, mode))
        rows.append((name, mode, alone, beside, beside / alone))
        print(f"{name:6s} {mode:7s} alone {alone:7.1f} s  beside a spinner {beside:7.1f} s  "
              f"ratio {beside / alone:5.2f}", flush=True)


def pair(data: Path, params: dict, rows: list) -> None:
    for mode in ("fixed", "default"):
        alone = timed(partial(start_train, data, params, mode))
        both = timed(partial(start_train, data, params, mode),
                     partial(start_train, data, params, mode))
        rows.append(("pair", mode, alone, both, both / alone))
        print(f"pair   {mode:7s} one alone {alone:7.1f} s  two together {both:7.1f} s  "
              f"ratio {both / alone:5.2f}", flush=True)


def search_pair(data: Path, params: dict, rows: list) -> None:
    for mode in ("fixed", "default"):
        alone = timed(partial(start_train, data, params, mode))
        parent = Path(tempfile.mkdtemp(prefix="contention-search-"))
        (parent / "params.json").write_text(json.dumps(params))
        (parent / "search.json").write_text(json.dumps(
            {"space": {"learning_rate": [params["learning_rate"],
                                         params["learning_rate"] / 2]}}))
        both = timed(partial(
            subprocess.Popen, [sys.executable, "-m", "torchstarter", "search", "--parent-dir",
                               str(parent), "--data-dir", str(data), "--jobs", "2"],
            env=env_for(mode), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        rows.append(("search", mode, alone, both, both / alone))
        print(f"search {mode:7s} one trial {alone:7.1f} s  --jobs 2, two trials {both:7.1f} s  "
              f"ratio {both / alone:5.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signs-raw", type=Path, default=SHARED_SIGNS)
    parser.add_argument("--ner-corpus", type=Path, default=SHARED_NER)
    parser.add_argument("--only", nargs="*", default=["ner", "signs", "pair", "search"])
    parser.add_argument("--signs-epochs", type=int, default=10)
    args = parser.parse_args()
    print(machine_line())
    rows: list = []
    if "ner" in args.only:
        alone_and_beside("ner", build_ner(args.ner_corpus), params_of("ner", num_epochs=1),
                         rows)
    signs = build_signs(args.signs_raw) if set(args.only) & {"signs", "pair", "search"} \
        else None
    if "signs" in args.only:
        alone_and_beside("signs", signs, params_of("signs", num_epochs=args.signs_epochs),
                         rows)
    if "pair" in args.only:
        pair(signs, params_of("signs", num_epochs=3), rows)
    if "search" in args.only:
        search_pair(signs, params_of("signs", num_epochs=3), rows)
    print("\n| workload | threads | alone s | contended s | ratio |\n|---|---|---|---|---|")
    for name, mode, alone, other, ratio in rows:
        print(f"| {name} | {mode} | {alone:.1f} | {other:.1f} | {ratio:.2f} |")
    fixed = {r[0]: r[2] for r in rows if r[1] == "fixed"}
    for name, mode, alone, *_ in rows:
        if mode == "default" and name in ("ner", "signs"):
            print(f"{name}: default alone / fixed alone = {alone / fixed[name]:.3f}")


if __name__ == "__main__":
    main()
