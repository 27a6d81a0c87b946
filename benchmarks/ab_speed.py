"""Old commit against new on the same work, alternated: does a change slow training down?

Two workloads, as benchmarks/signs_speed.py and benchmarks/ner_speed.py time them:
  signs  the whole `train` call, reference params (10 epochs, batch 32, defaults:
         channels_last, 2 threads), on the real SIGNS data
  ner    one training epoch at batch 5, reference params, on the Kaggle corpus
Each measurement is a fresh process that imports torchstarter from a git worktree of
the commit (its own code, the same data and params), so the two never share a process.
Runs go A B B A A B ... so that a machine that slows down over time favours neither, and
the ratio new/old is reported per workload (median of the runs, and each pair's ratio).

    python benchmarks/ab_speed.py --old 5290562 --new HEAD [--repeats 4] [--only ner]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, SHARED_NER, SHARED_SIGNS, build_ner, build_signs, cpu_model

# Runs in the measured commit's code; prints one JSON line. It must work with the
# interfaces of both commits, so it asks for the newer names and falls back.
MEASURE = r'''
import json, sys, tempfile, time
from pathlib import Path
import torch
import torchstarter
kind, data_dir, params_file = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
reference = json.loads(params_file.read_text())
if kind == "signs":
    from torchstarter.experiment.training import train
    model_dir = Path(tempfile.mkdtemp(prefix="ab-signs-"))
    (model_dir / "params.json").write_text(json.dumps({**reference, "num_threads": 2}))
    started = time.perf_counter()
    train(model_dir, data_dir, console=False)
    seconds = time.perf_counter() - started
else:
    from torchstarter.engine.rng import seed_everything
    from torchstarter.tasks.registry import resolve_params
    torch.set_num_threads(2)
    task, params = resolve_params(reference, "benchmark")
    info = task.describe_data(params, data_dir)
    seed_everything(params.seed)
    try:
        from torchstarter.engine.build import build_trainer
        trainer = build_trainer(task, params, torch.device("cpu"), info)
        split = task.load_split(params, data_dir, "train", info)
    except ImportError:  # before the Task interface: the trainer built its own parts
        from torchstarter.engine.trainer import Trainer
        trainer = Trainer(task, params, torch.device("cpu"), info)
        split = task.read_split(params, data_dir, "train", info)
    started = time.perf_counter()
    trainer.train_epoch(split, 1)
    seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "from": torchstarter.__file__}))
'''

PARAMS = {"signs": REPO / "experiments/signs/base_model/params.json",
          "ner": REPO / "experiments/ner/base_model/params.json"}


def worktree(rev: str, root: Path) -> tuple[str, Path]:
    """A detached worktree of `rev` under root; (short commit, its src folder)."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    path = root / commit
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=REPO,
                       check=True, capture_output=True)
    return commit, path / "src"


def measure(kind: str, src: Path, data: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", MEASURE, kind, str(data), str(PARAMS[kind])],
                         env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise SystemExit(f"{kind} at {src}: failed\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(result["from"]).resolve().is_relative_to(src.resolve()), result["from"]
    return float(result["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--new", default="HEAD", help="the commit under test (default HEAD)")
    parser.add_argument("--repeats", type=int, default=4, help="runs of each commit")
    parser.add_argument("--only", choices=sorted(PARAMS), action="append", default=None)
    parser.add_argument("--signs-raw", type=Path, default=SHARED_SIGNS)
    parser.add_argument("--ner-corpus", type=Path, default=SHARED_NER)
    args = parser.parse_args()
    kinds = args.only or sorted(PARAMS)
    data = {}
    if "signs" in kinds:
        data["signs"] = build_signs(args.signs_raw)
    if "ner" in kinds:
        data["ner"] = build_ner(args.ner_corpus)
    root = Path(tempfile.mkdtemp(prefix="ab-worktrees-"))
    (old, old_src), (new, new_src) = worktree(args.old, root), worktree(args.new, root)
    import torch

    print(f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"old {old}, new {new}, {args.repeats} runs each", flush=True)
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for kind in kinds:
            for rep in range(args.repeats):
                order = [(old, old_src), (new, new_src)]
                for name, src in order if rep % 2 == 0 else order[::-1]:
                    seconds = measure(kind, src, data[kind])
                    times.setdefault((kind, name), []).append(seconds)
                    print(f"  {kind} run {rep + 1} {name}: {seconds:.2f}s", flush=True)
    finally:
        for path in root.iterdir():
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO,
                           capture_output=True)
    print()
    for kind in kinds:
        a, b = times[(kind, old)], times[(kind, new)]
        pairs = ", ".join(f"{y / x:.3f}" for x, y in zip(a, b, strict=True))
        print(f"{kind}: old median {statistics.median(a):.2f}s (min {min(a):.2f}), new median "
              f"{statistics.median(b):.2f}s (min {min(b):.2f}); new/old "
              f"{statistics.median(b) / statistics.median(a):.3f} (pairs: {pairs})")


if __name__ == "__main__":
    main()
