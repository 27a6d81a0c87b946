"""`torchstarter export` per task: time, artifact size and parity; then onnxruntime and the
torch.export program against eager torch on the CPU, at batch 1 and batch 64.

Models: SIGNS's base_model params and NER's tuned params
(BiLSTM + char CNN + CRF), each trained briefly (export and speed do not depend on
accuracy). Eager is what evaluate and predict run: the model's forward in inference mode
(for NER with packed sequences and the CRF's Viterbi); the artifacts compute the same
outputs (tags included). Times are the median of repeated calls after a warm-up; A and
B alternate.

    python benchmarks/export_speed.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from _common import machine_line
from serving import trained_models

from torchstarter.engine.batching import iterate_groups
from torchstarter.experiment.evaluation import load_trained
from torchstarter.experiment.training import load_splits
from torchstarter.export.artifact import export_model
from torchstarter.export.formats import FORMATS


def batch_of(model_dir: Path, data_dir: Path, size: int):
    """A validation batch of `size` examples (repeated if the split is smaller)."""
    trained = load_trained(model_dir, "best", {"device": "cpu"})
    data = load_splits(trained.task, trained.params, data_dir, ("val",),
                       trained.data_info)["val"]
    index = torch.arange(size) % len(data)
    (inputs, _), = iterate_groups(data, [index], torch.device("cpu"))
    spec = trained.task.export_spec(trained.model, trained.params, trained.data_info)
    return spec, inputs


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(machine_line())
    root = Path(tempfile.mkdtemp(prefix="export-bench-"))
    models = trained_models(root)
    print(f"\n{'task':6} {'format':13} {'export s':>8} {'MB':>6} {'max |diff|':>10} "
          f"{'identical':>9} {'examples':>8}")
    paths = {}
    for task, (model_dir, data_dir, _) in models.items():
        for fmt in ("onnx", "torch-export"):
            started = time.perf_counter()
            out, meta = export_model(model_dir, data_dir, fmt=fmt)
            total = time.perf_counter() - started
            p = meta["parity"]
            paths[task, fmt] = (out, data_dir)
            print(f"{task:6} {fmt:13} {meta['export_seconds']:>8.1f} {meta['bytes'] / 1e6:>6.2f}"
                  f" {p['max_abs_diff']:>10.2g} {p['identical_predictions']:>9.2%} "
                  f"{p['examples']:>8}   (whole command incl. check: {total:.1f} s)")
    print(f"\n{'task':6} {'batch':>5} {'eager ms':>9} {'onnxruntime ms':>15} {'ratio':>6} "
          f"{'torch.export ms':>16} {'ratio':>6}")
    for task, (model_dir, _, _) in models.items():
        onnx_path, data_dir = paths[task, "onnx"]
        ort = FORMATS["onnx"].load(onnx_path)
        pt2 = FORMATS["torch-export"].load(paths[task, "torch-export"][0])
        for size in (1, 64):
            spec, inputs = batch_of(model_dir, data_dir, size)
            feed = spec.feed(inputs)
            times = {"eager": [], "onnx": [], "pt2": []}
            calls = {"eager": partial(spec.reference, inputs), "onnx": partial(ort, feed),
                     "pt2": partial(pt2, feed)}
            for _ in range(3):  # alternate, three rounds
                for name, fn in calls.items():
                    times[name].append(median_time(fn, args.repeats))
            t = {name: statistics.median(v) * 1000 for name, v in times.items()}
            print(f"{task:6} {size:>5} {t['eager']:>9.2f} {t['onnx']:>15.2f} "
                  f"{t['eager'] / t['onnx']:>6.2f} {t['pt2']:>16.2f} "
                  f"{t['eager'] / t['pt2']:>6.2f}", flush=True)
    print("\nratio: eager time / artifact time (above 1: the artifact is faster)")


if __name__ == "__main__":
    main()
