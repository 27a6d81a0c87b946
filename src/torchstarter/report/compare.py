"""`compare A B`: is experiment B really better than A on the same examples?

Both must have been evaluated on one split (the predictions files carry its hash). For
each metric: A, B, the difference and a paired-bootstrap 95% interval of it (the same
resampled examples for both, which is what makes small but steady gains visible);
McNemar's test on the examples each run gets right or wrong (a NER sentence is right when
every tag is);
per-class (or per entity type) differences; and the examples whose correctness flipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from torchstarter.config.jsonfile import read_json
from torchstarter.errors import UserError
from torchstarter.experiment import files
from torchstarter.experiment.evaluation import file_sha256
from torchstarter.experiment.predictions import STATISTICS, read_predictions
from torchstarter.report.synthesize import NOT_HYPERPARAMETERS
from torchstarter.utils import stats


@dataclass
class Comparison:
    a: Path
    b: Path
    split: str
    unit: str
    examples: int
    params: list[tuple[str, Any, Any]]  # key, A's value, B's value (only those differing)
    metrics: list[dict[str, Any]]  # metric, a, b, difference, low, high
    mcnemar: stats.McNemar | None
    correct_unit: str
    per_class: list[dict[str, Any]] = field(default_factory=list)
    flipped: dict[str, list[str]] = field(default_factory=dict)  # "fixed", "broken" -> ids
    resamples: int = stats.RESAMPLES
    seed: int = 0


def _experiment(folder: Path, split: str, restore: str) -> tuple[dict, list[dict], Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: experiment folder not found")
    if (folder / "search.json").is_file() or (folder / "search.journal").is_file():
        raise UserError(f"{folder}: a search parent, not one experiment; compare two of its "
                        f"trial folders (synthesize --parent-dir {folder} lists them)")
    path = folder / files.predictions_file(split, restore)
    if not path.is_file():
        raise UserError(f"{path}: not found: {folder} has no evaluation on {split} with "
                        f"{restore} weights yet; run torchstarter evaluate --model-dir "
                        f"{folder} --data-dir DATA --split {split} --restore {restore}")
    header, rows = read_predictions(path)
    weights = folder / files.CHECKPOINTS[restore]
    if weights.is_file() and header.get("weights_sha256") != file_sha256(weights):
        raise UserError(f"{path}: written for other weights than {weights} holds now (trained "
                        f"again since?); run torchstarter evaluate again")
    return header, rows, path


def _read(path: Path) -> Any:
    """A JSON file, or None when it cannot be read: these only add detail to the table."""
    try:
        return read_json(path)
    except (OSError, ValueError, UserError):
        return None


def _params(folder: Path) -> dict[str, Any]:
    for name in ("resolved_params.json", "params.json"):
        value = _read(Path(folder) / name)
        if isinstance(value, dict):
            return value
    return {}


def _correct(rows: list[dict[str, Any]]) -> np.ndarray:
    """Right or wrong per row: its own flag, else whether its prediction equals its truth
    (a sentence tagged entirely right). Rows, not tokens: the errors of one sentence are
    not independent, and McNemar's test assumes its pairs are."""
    return np.array([row["correct"] is True if "correct" in row
                     else row.get("predicted") == row["true"] for row in rows])


def _per_class(rows_a: list[dict], rows_b: list[dict]) -> list[dict[str, Any]]:
    """Accuracy per true class (classification rows only)."""
    if not all(isinstance(row["true"], str) and "correct" in row for row in rows_a):
        return []
    table = []
    for name in sorted({row["true"] for row in rows_a}):
        picked = [i for i, row in enumerate(rows_a) if row["true"] == name]
        acc_a = float(np.mean([rows_a[i]["correct"] for i in picked]))
        acc_b = float(np.mean([rows_b[i]["correct"] for i in picked]))
        table.append({"class": name, "support": len(picked), "a": acc_a, "b": acc_b,
                      "difference": acc_b - acc_a})
    return table


def _per_type(a: Path, b: Path, split: str, restore: str) -> list[dict[str, Any]]:
    """F1 per entity type from the metrics files' per_type tables (NER)."""
    tables = []
    for folder in (a, b):
        metrics = _read(folder / files.metrics_file(split, restore))
        table = metrics.get("per_type") if isinstance(metrics, dict) else None
        if not isinstance(table, dict):
            return []
        tables.append({name: row for name, row in table.items() if " " not in name
                       and isinstance(row, dict) and isinstance(row.get("f1"), int | float)})
    return [{"class": name, "support": tables[0][name].get("support"),
             "a": tables[0][name]["f1"], "b": tables[1][name]["f1"],
             "difference": tables[1][name]["f1"] - tables[0][name]["f1"]}
            for name in sorted(set(tables[0]) & set(tables[1]))]


def compare(a: Path, b: Path, split: str = "test", restore: str = "best",
            resamples: int = stats.RESAMPLES, seed: int = 0) -> Comparison:
    header_a, rows_a, path_a = _experiment(a, split, restore)
    header_b, rows_b, path_b = _experiment(b, split, restore)
    if header_a.get("task") != header_b.get("task"):
        raise UserError(f"{a} and {b}: experiments of different tasks "
                        f"({header_a.get('task')}, {header_b.get('task')}); compare runs of "
                        f"one task")
    if header_a["split_sha256"] != header_b["split_sha256"]:
        raise UserError(f"{path_a} and {path_b}: evaluated on different data (the {split} "
                        f"splits' hashes differ); evaluate both on the same data folder")
    params_a, params_b = _params(a), _params(b)
    differing = [(key, params_a.get(key), params_b.get(key))
                 for key in sorted(set(params_a) | set(params_b))
                 if params_a.get(key) != params_b.get(key) and key not in NOT_HYPERPARAMETERS]
    metrics = []
    for i, (metric, kind) in enumerate(sorted(header_a["parts"].items())):
        if header_b["parts"].get(metric) != kind:
            continue
        parts_a = np.array([row["parts"][metric] for row in rows_a], dtype=np.float64)
        parts_b = np.array([row["parts"][metric] for row in rows_b], dtype=np.float64)
        statistic = STATISTICS[kind]
        value_a = float(statistic(parts_a.sum(axis=0)))
        value_b = float(statistic(parts_b.sum(axis=0)))
        interval = stats.paired_difference_interval(parts_a, parts_b, statistic, resamples,
                                                    seed=seed + i)
        metrics.append({"metric": metric, "a": value_a, "b": value_b,
                        "difference": value_b - value_a, "low": interval.low,
                        "high": interval.high})
    correct_a, correct_b = _correct(rows_a), _correct(rows_b)
    test = stats.mcnemar(correct_a, correct_b)
    flipped: dict[str, list[str]] = {"fixed": [], "broken": []}
    for row, right_a, right_b in zip(rows_a, correct_a, correct_b, strict=True):
        if right_a != right_b:
            flipped["fixed" if right_b else "broken"].append(str(row["id"]))
    per_class = _per_class(rows_a, rows_b) or _per_type(Path(a), Path(b), split, restore)
    unit = header_a.get("unit", "example")
    return Comparison(Path(a), Path(b), split, unit, len(rows_a), differing, metrics, test,
                      f"{unit}s" if unit == "example" else f"{unit}s (each entirely right or not)",
                      per_class, flipped, resamples, seed)
