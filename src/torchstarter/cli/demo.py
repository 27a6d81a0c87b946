"""`torchstarter demo`: the whole SIGNS pipeline on the built-in digits, in a fresh folder."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from tabulate import tabulate

from torchstarter.config import parse_overrides
from torchstarter.config.params import read_params_file
from torchstarter.errors import UserError
from torchstarter.experiment.evaluation import evaluate, predict
from torchstarter.experiment.training import train
from torchstarter.tasks import load_task


def run_demo(output_dir: Path | None, params_file: Path, overrides: list[str],
             raw_dir: Path | None = None) -> Path:
    """Run every step; with raw_dir, on that raw data instead of the built-in sample."""
    started = time.perf_counter()
    params = read_params_file(params_file)
    task = load_task(params.get("task", "signs"))
    if task.build_dataset is None or (raw_dir is None and task.write_sample_data is None):
        raise UserError(f"{params_file}: task '{task.name}' has no built-in sample data; "
                        f"pass --raw-dir")
    out = Path(output_dir or Path("demo-runs") / time.strftime("%Y%m%d-%H%M%S"))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder; pick another --output-dir")
    data, model_dir = out / "data", out / "experiment"

    if raw_dir is None:
        raw = out / "raw"
        print(f"== 1/5 sample data ({task.name}) -> {raw}")
        print("   ", task.write_sample_data(raw))
    else:
        raw = Path(raw_dir)
        print(f"== 1/5 raw data: {raw}")
    print(f"== 2/5 build-dataset -> {data}")
    for line in task.build_dataset(task.build_options(raw, data)):
        print("   ", line)

    print(f"== 3/5 train {params_file} -> {model_dir}")
    model_dir.mkdir(parents=True)
    shutil.copyfile(params_file, model_dir / "params.json")
    trainer = train(model_dir, data, overrides=parse_overrides(overrides))
    es = trainer.early_stopping
    if es.best is None:
        raise UserError(f"{model_dir}: training gave no finite val metric; see train.log")

    print("== 4/5 evaluate best weights on test")
    test, _ = evaluate(model_dir, data, "test", "best")
    print("== 5/5 predict three test images")
    sample = sorted((data / "test_signs").iterdir())[::40][:3]
    for row in predict(model_dir, [str(p) for p in sample]):
        probs = row["probabilities"]
        print(f"    {Path(row['file']).name}: label {row['label']} "
              f"(p={probs[str(row['label'])]:.3f})")

    best_row = next(r for r in trainer.history if r["epoch"] == es.best_epoch)
    table = [{"split": "val (best epoch)", **{k[4:]: v for k, v in best_row.items()
                                               if k.startswith("val_")}},
             {"split": "test", **{k: v for k, v in test.items() if k not in ("epoch",
                                                                             "examples")}}]
    print()
    print(tabulate(table, headers="keys", floatfmt=".4f"))
    print(f"\nbest epoch {es.best_epoch}/{trainer.epoch}; demo took "
          f"{time.perf_counter() - started:.0f}s; everything is in {out}")
    (out / "summary.json").write_text(json.dumps(table, indent=2) + "\n")
    return out
