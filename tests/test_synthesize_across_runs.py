"""What `synthesize` says across runs: runs that differ only by seed grouped into one row
per setting (n, mean, standard deviation, min and max of every metric), and the fANOVA
importance of each searched hyper-parameter."""

import csv
import json
import statistics

import pytest
from conftest import TINY

from torchstarter.experiment.training import train
from torchstarter.report.synthesize import synthesize_report


def trained_grid(parent, data, **grid):
    """One tiny one-epoch run per combination of the grid's values, trained in place."""
    import itertools

    keys = list(grid)
    for values in itertools.product(*grid.values()):
        folder = parent / "_".join(f"{k}{v}" for k, v in zip(keys, values, strict=True))
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps(
            {**TINY, "num_epochs": 1, **dict(zip(keys, values, strict=True))}))
        train(folder, data, console=False)
    return parent


def test_runs_differing_only_by_seed_become_one_row_per_setting(tmp_path, sample_data):
    parent = trained_grid(tmp_path / "repeats", sample_data, learning_rate=(1e-3, 1e-2),
                          seed=(1, 2, 3))
    report = synthesize_report(parent)
    with open(parent / "results.csv") as fh:
        runs = list(csv.DictReader(fh))
    with open(parent / "results_by_seed.csv") as fh:
        groups = list(csv.DictReader(fh))
    assert len(runs) == 6 and len(groups) == 2
    for group in groups:
        assert group["n"] == "3"
        members = [r for r in runs if r["learning_rate"] == group["learning_rate"]]
        assert sorted(group["runs"].split()) == sorted(r["name"] for r in members)
        values = [float(r["val_accuracy"]) for r in members]
        assert float(group["val_accuracy mean"]) == pytest.approx(statistics.mean(values))
        assert float(group["val_accuracy std"]) == pytest.approx(statistics.stdev(values))
        assert float(group["val_accuracy min"]) == pytest.approx(min(values))
        assert float(group["val_accuracy max"]) == pytest.approx(max(values))
    assert "Runs that differ only in their seed" in report.text
    assert "Runs that differ only in their seed" in (parent / "results.md").read_text()
    assert "seed" not in groups[0]


def test_no_seed_table_without_repeats(tmp_path, sample_data):
    parent = tmp_path / "single"
    for seed in (1, 2):
        folder = parent / f"run{seed}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps(
            {**TINY, "num_epochs": 1, "seed": seed, "learning_rate": 10.0 ** -seed}))
        train(folder, sample_data, console=False)
    synthesize_report(parent)
    assert not (parent / "results_by_seed.csv").exists()


def test_a_search_of_two_params_gets_their_fanova_importances(tmp_path, sample_data):
    parent = trained_grid(tmp_path / "search", sample_data, learning_rate=(1e-3, 1e-2),
                          dropout_rate=(0.1, 0.5, 0.8))
    report = synthesize_report(parent)
    found = report.table.importances
    assert set(found) == {"learning_rate", "dropout_rate"}
    assert sum(found.values()) == pytest.approx(1.0)
    assert "Hyper-parameter importance (Optuna's fANOVA" in report.text
    assert (parent / "param_importances.png") in report.written
    again = synthesize_report(parent).table.importances
    assert again == found  # seeded: the same numbers every time


def test_test_metrics_show_their_95_percent_interval(tmp_path, sample_data):
    from torchstarter.experiment.evaluation import evaluate

    parent = tmp_path / "evaluated"
    for lr in (1e-3, 1e-2):
        folder = parent / f"lr{lr}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps(
            {**TINY, "num_epochs": 1, "learning_rate": lr}))
        train(folder, sample_data, console=False)
        evaluate(folder, sample_data)
    synthesize_report(parent)
    with open(parent / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        interval = json.loads((parent / row["name"] / "metrics_test_best.json").read_text())[
            "intervals"]["accuracy"]
        low, high = (float(x) for x in row["test_accuracy 95% CI"].split("-"))
        assert (low, high) == (pytest.approx(interval["low"], abs=1e-4),
                               pytest.approx(interval["high"], abs=1e-4))
        assert low <= float(row["test_accuracy"]) <= high


def test_no_importances_when_every_run_scored_the_same():
    from torchstarter.report.importance import importances

    params = [{"a": a, "b": b} for a in (1, 2) for b in (0.1, 0.2, 0.3)]
    assert importances(params, [0.5] * 6, ["a", "b"], "max") is None
    assert importances(params, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], ["a", "b"], "max") is not None
