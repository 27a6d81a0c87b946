"""evaluate's per-example file and the confidence intervals of its metrics.

predictions_<split>_<restore>.jsonl: a header line, then one line per example (its id,
true and predicted label, probabilities, loss, and its parts of each metric). The header
holds a hash of the split (ids and true labels, in order), so that two runs are compared
only on the same examples, and the hash of the weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from torchstarter.engine.examples import F1, RATIO, Examples
from torchstarter.utils import stats
from torchstarter.utils.atomic import atomic_open

FORMAT = "torchstarter predictions 1"
STATISTICS = {RATIO: stats.ratio, F1: stats.f1}


def split_hash(examples: Examples) -> str:
    """What the split is: its examples' ids and true labels, in order."""
    listed = json.dumps([[row["id"], row["true"]] for row in examples.rows],
                        ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(listed.encode()).hexdigest()


def intervals(examples: Examples, seed: int, resamples: int = stats.RESAMPLES
              ) -> dict[str, dict[str, Any]]:
    """A 95% percentile-bootstrap interval of each metric, resampling examples."""
    out = {}
    for i, (metric, (parts, kind)) in enumerate(sorted(examples.parts.items())):
        interval = stats.bootstrap_interval(parts, STATISTICS[kind], resamples,
                                            seed=seed + i)
        out[metric] = {**interval.describe(), "over": examples.unit + "s"}
    return out


def write_predictions(path: Path, examples: Examples, header: dict[str, Any]) -> None:
    parts = {metric: (np.asarray(p).tolist(), kind)
             for metric, (p, kind) in examples.parts.items()}
    with atomic_open(path, "w") as fh:
        fh.write(json.dumps({"format": FORMAT, **header, "examples": len(examples.rows),
                             "split_sha256": split_hash(examples), "unit": examples.unit,
                             "correct_unit": examples.correct_unit,
                             "parts": {m: kind for m, (_, kind) in parts.items()}},
                            ensure_ascii=False) + "\n")
        for i, row in enumerate(examples.rows):
            row = {**row, "parts": {m: rows[i] for m, (rows, _) in parts.items()}}
            if examples.correct is not None and examples.correct_unit == examples.unit:
                row["correct"] = bool(examples.correct[i])
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
