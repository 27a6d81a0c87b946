"""SIGNS test accuracy over several seeds, with and without leaked duplicates.

For each params file and seed: train on the real SIGNS splits, pick `best` by val
accuracy, evaluate it on test. Done once on the plain build and once on the build
with --drop-leaks (val/test images equal to a training image removed).

    python benchmarks/signs_accuracy.py [--params experiments/signs/base_model/params.json
        experiments/signs/tuned/params.json] [--seeds 230 231 232] [--set precision=bf16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _common import REPO, SHARED_SIGNS, build_signs
from tabulate import tabulate

from torchstarter.config import parse_overrides
from torchstarter.experiment.evaluation import evaluate
from torchstarter.experiment.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=SHARED_SIGNS)
    parser.add_argument("--params", type=Path, nargs="+", default=[
        REPO / "experiments/signs/base_model/params.json",
        REPO / "experiments/signs/tuned/params.json"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[230, 231, 232])
    parser.add_argument("--leaks", choices=["kept", "dropped", "both"], default="both")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[])
    args = parser.parse_args()
    builds = {}
    if args.leaks in ("kept", "both"):
        builds["kept"] = build_signs(args.raw)
    if args.leaks in ("dropped", "both"):
        builds["dropped"] = build_signs(args.raw, drop_leaks=True)
    overrides = parse_overrides(args.overrides)
    rows = []
    for params_file in args.params:
        base = json.loads(params_file.read_text())
        for leaks, data_dir in builds.items():
            accs, vals, secs = [], [], []
            for seed in args.seeds:
                model_dir = Path(tempfile.mkdtemp(prefix="acc-"))
                (model_dir / "params.json").write_text(json.dumps(base))
                started = time.perf_counter()
                trainer = train(model_dir, data_dir, overrides={**overrides, "seed": seed},
                                console=False)
                secs.append(time.perf_counter() - started)
                test, _ = evaluate(model_dir, data_dir, "test", "best")
                accs.append(test["accuracy"])
                vals.append(trainer.early_stopping.best)
                print(f"  {params_file.parent.name} leaks {leaks} seed {seed}: val "
                      f"{vals[-1]:.4f} test {accs[-1]:.4f} ({secs[-1]:.1f}s)", flush=True)
            rows.append([params_file.parent.name, leaks, len(args.seeds),
                         f"{statistics.mean(vals):.4f}", f"{statistics.mean(accs):.4f}",
                         f"{min(accs):.4f}", f"{max(accs):.4f}",
                         f"{statistics.mean(secs):.1f}"])
    print(f"\nSIGNS test accuracy of `best` (by val accuracy); overrides: {overrides or 'none'}")
    print(tabulate(rows, headers=["params", "leaks", "seeds", "val best mean", "test mean",
                                  "test min", "test max", "train s"]))


if __name__ == "__main__":
    main()
