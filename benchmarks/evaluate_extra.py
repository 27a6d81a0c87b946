"""What per-example results, intervals and error analysis add to `evaluate` (issue 14).

On the real SIGNS test split and the Kaggle NER test split: the time of the evaluation
evaluate always did (metrics and the task's report) against the time of what it now adds
(per-example rows, 1,000-resample bootstrap intervals of every metric, the predictions
file, the analysis files), alternated over --repeats; and the time of `compare` on two
NER runs. Models are trained briefly first (SIGNS 3 epochs, NER 1 epoch at batch 64), so
the predictions have realistic errors. Prints medians and the machine.

    python benchmarks/evaluate_extra.py [--repeats 3] [--signs-raw DIR] [--ner-corpus ZIP]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import SHARED_NER, SHARED_SIGNS, build_ner, build_signs, machine_line

from torchstarter.engine import evaluation
from torchstarter.experiment.analysis import analyse
from torchstarter.experiment.evaluation import evaluate, load_trained
from torchstarter.experiment.predictions import intervals, write_predictions
from torchstarter.experiment.training import load_splits, train
from torchstarter.report.compare import compare


def trained(data: Path, params: dict) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="eval-extra-")) / "run"
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps(params))
    train(folder, data, console=False)
    return folder


def timings(folder: Path, data_dir: Path, repeats: int) -> tuple[list[float], list[float]]:
    run = load_trained(folder)
    task, params, model, device = run.task, run.params, run.model, run.device
    data = load_splits(task, params, data_dir, ("test",), run.data_info)["test"]
    base, extra = [], []
    out = Path(tempfile.mkdtemp(prefix="eval-extra-out-"))
    for _ in range(repeats):
        start = time.perf_counter()
        evaluation.evaluate(model, data, task, params, device)
        task.evaluation_report(model, params, data, device, run.data_info)
        middle = time.perf_counter()
        examples = task.examples(model, params, data, device, run.data_info)
        intervals(examples, params.seed)
        write_predictions(out / "predictions_test_best.jsonl", examples, {})
        analyse(examples, data, out, "test_best")
        end = time.perf_counter()
        base.append(middle - start)
        extra.append(end - middle)
    return base, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--signs-raw", type=Path, default=SHARED_SIGNS)
    parser.add_argument("--ner-corpus", type=Path, default=SHARED_NER)
    args = parser.parse_args()
    print(machine_line())
    signs_data = build_signs(args.signs_raw)
    signs = trained(signs_data, {"task": "signs", "learning_rate": 1e-3, "batch_size": 32,
                                 "num_epochs": 3, "num_channels": 32})
    ner_data = build_ner(args.ner_corpus)
    ner = trained(ner_data, {"task": "ner", "learning_rate": 1e-3, "batch_size": 64,
                             "num_epochs": 1})
    for name, folder, data in (("SIGNS test", signs, signs_data), ("NER test", ner, ner_data)):
        base, extra = timings(folder, data, args.repeats)
        print(f"{name}: evaluate as before {statistics.median(base):.2f} s, added "
              f"{statistics.median(extra):.2f} s (median of {args.repeats}; "
              f"all added: {', '.join(f'{x:.2f}' for x in extra)})")
    evaluate(ner, ner_data)
    other = shutil.copytree(ner, ner.parent / "copy")
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        compare(ner, other)
        seconds.append(time.perf_counter() - start)
    print(f"compare on two NER runs: {statistics.median(seconds):.2f} s (median of "
          f"{args.repeats})")


if __name__ == "__main__":
    main()
