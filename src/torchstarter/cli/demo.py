"""`torchstarter demo`: every step of the workflow on built-in data, in a fresh folder.

For each task: sample (or given raw) data -> build-dataset -> build-vocab (tasks with
a vocabulary) -> train -> evaluate on test -> predict a few inputs -> summary table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from torchstarter.config import parse_overrides
from torchstarter.config.params import read_params_file
from torchstarter.errors import UserError
from torchstarter.experiment.evaluation import evaluate, predict
from torchstarter.experiment.training import train
from torchstarter.tasks import Task, load_task
from torchstarter.tasks.sample_params import SAMPLE_PARAMS
from torchstarter.utils.folders import creatable_folder

DEMO_PARAMS = SAMPLE_PARAMS  # what the demo trains with, unless --params


def run_demo(output_dir: Path | None, tasks: list[str], params_file: Path | None,
             overrides: list[str], raw_dir: Path | None = None) -> Path:
    started = time.perf_counter()
    out = Path(output_dir or Path("demo-runs") / time.strftime("%Y%m%d-%H%M%S"))
    real = creatable_folder(out)
    if out.is_symlink():  # write where the link leads (a dangling one: create its target)
        out = real
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder; pick another --output-dir")
    if (params_file or raw_dir) and len(tasks) != 1:
        raise UserError("--params and --raw-dir apply to one task: add --task signs or ner")
    summary: list[dict[str, Any]] = []
    for name in tasks:
        summary += run_task_demo(out / name, load_task(name), params_file, overrides, raw_dir)
    print()
    print(tabulate(summary, headers="keys", floatfmt=".4f", missingval=""))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ndemo took {time.perf_counter() - started:.0f}s; everything is in {out}")
    return out


def run_task_demo(out: Path, task: Task, params_file: Path | None, overrides: list[str],
                  raw_dir: Path | None) -> list[dict[str, Any]]:
    params = read_params_file(params_file) if params_file else DEMO_PARAMS[task.name]
    source = params_file or f"the built-in {task.name} demo params"
    if params.get("task") != task.name:
        raise UserError(f"{params_file}: task is {params.get('task')!r}, not '{task.name}'")
    if not task.provides("build_dataset") or \
            (raw_dir is None and not task.provides("write_sample_data")):
        raise UserError(f"task '{task.name}' has no built-in sample data; pass --raw-dir")
    data, model_dir = out / "data", out / "experiment"
    print(f"\n######## {task.name} ########")
    note = None
    if raw_dir is None:
        raw = out / "raw"
        written = task.write_sample_data(raw)
        note = written.pop("note", None) if isinstance(written, dict) else None
        print(f"== sample data -> {raw}: {written}")
    else:
        raw = Path(raw_dir)
        print(f"== raw data: {raw}")
    print(f"== build-dataset -> {data}")
    for line in task.build_dataset(task.build_options(raw, data)):
        print("   ", line)
    if task.provides("build_vocab"):
        print(f"== build-vocab in {data}")
        for line in task.build_vocab(task.vocab_options(data)):
            print("   ", line)

    print(f"== train {source} -> {model_dir}")
    model_dir.mkdir(parents=True)
    (model_dir / "params.json").write_text(json.dumps(params, indent=4) + "\n")
    trainer = train(model_dir, data, overrides=parse_overrides(overrides))
    es = trainer.early_stopping
    if es.best is None:
        raise UserError(f"{model_dir}: training gave no finite val metric; see train.log")
    print("== evaluate the best weights on test")
    test, _ = evaluate(model_dir, data, "test", "best")
    print("== predict")
    inputs = task.demo_inputs(data)
    if inputs:
        _, rows = predict(model_dir, inputs)
        text = task.format_predictions(rows)
        if text is not None:
            print(text)
        else:
            for row in rows:
                print("   ", {k: v for k, v in row.items() if not isinstance(v, dict)})
        if note:  # e.g. a sample too small to learn from: said beside what it predicted
            print(f"   NOTE: {note}")

    best_row = trainer.history[es.best_epoch - 1]
    scalar = {k: v for k, v in test.items() if isinstance(v, float)}
    return [{"task": task.name, "split": f"val (best, epoch {es.best_epoch})",
             **{k[4:]: v for k, v in best_row.items() if k.startswith("val_")}},
            {"task": task.name, "split": "test", **scalar}]
