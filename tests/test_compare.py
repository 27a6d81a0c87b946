"""`torchstarter compare A B` on two real SIGNS runs: the numbers agree with both runs'
own files, a run compared with itself shows no difference at all, and runs that cannot be
compared are refused in one line."""

import json
import shutil

import numpy as np
import pytest

from torchstarter.cli.main import main
from torchstarter.experiment.evaluation import evaluate
from torchstarter.experiment.training import train
from torchstarter.report.compare import compare


@pytest.fixture(scope="module")
def two_runs(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    runs = []
    for name, channels in (("a", 4), ("b", 8)):
        folder = root / name
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(
            {"task": "signs", "learning_rate": 1e-2, "batch_size": 32, "num_epochs": 2,
             "num_channels": channels}))
        train(folder, sample_data, console=False)
        evaluate(folder, sample_data)
        runs.append(folder)
    return runs


def rows(folder):
    lines = (folder / "predictions_test_best.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[1:]]


def test_the_comparison_agrees_with_each_runs_own_files(two_runs):
    a, b = two_runs
    result = compare(a, b)
    metrics = {m["metric"]: m for m in result.metrics}
    acc_a = json.loads((a / "metrics_test_best.json").read_text())["accuracy"]
    acc_b = json.loads((b / "metrics_test_best.json").read_text())["accuracy"]
    row = metrics["accuracy"]
    assert (row["a"], row["b"]) == (pytest.approx(acc_a), pytest.approx(acc_b))
    assert row["low"] <= row["difference"] <= row["high"]
    right_a = np.array([r["correct"] for r in rows(a)])
    right_b = np.array([r["correct"] for r in rows(b)])
    assert result.mcnemar.only_a == int((right_a & ~right_b).sum())
    assert result.mcnemar.only_b == int((~right_a & right_b).sum())
    assert len(result.flipped["fixed"]) == result.mcnemar.only_b
    assert ("num_channels", 4, 8) in result.params
    assert sum(c["support"] for c in result.per_class) == result.examples == len(right_a)


def test_a_run_compared_with_itself_differs_in_nothing(two_runs):
    a, _ = two_runs
    result = compare(a, a)
    assert all(m["difference"] == m["low"] == m["high"] == 0 for m in result.metrics)
    assert result.mcnemar.p_value == 1.0 and result.params == []
    assert result.flipped == {"fixed": [], "broken": []}


def test_the_command_prints_the_table_and_the_test(two_runs, capsys):
    a, b = two_runs
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "95% CI of B - A" in out and "McNemar (exact binomial) over examples" in out
    assert "params that differ" in out and "num_channels" in out
    assert main(["compare", str(a), str(b), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metrics"][0]["metric"] == "accuracy" and data["examples"] == 120


def refused(capsys, *argv):
    code = main(["compare", *map(str, argv)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_predictions_file_edited_or_cut_short_is_refused(two_runs, tmp_path, capsys):
    a, b = two_runs
    edited = shutil.copytree(b, tmp_path / "edited")
    path = edited / "predictions_test_best.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[5])
    row["true"] = "5" if row["true"] != "5" else "4"
    path.write_text("\n".join([*lines[:5], json.dumps(row), *lines[6:]]) + "\n")
    assert "no longer match the hash in its header" in refused(capsys, a, edited)
    path.write_text("\n".join(lines[:-3]) + "\n")
    assert "rows, but its header says 120: cut short or edited" in refused(capsys, a, edited)
    path.write_text("not json\n")
    assert "not a predictions file" in refused(capsys, a, edited)


def test_predictions_of_weights_trained_over_since_are_refused(two_runs, sample_data, tmp_path,
                                                              capsys):
    a, b = two_runs
    again = shutil.copytree(b, tmp_path / "again")
    train(again, sample_data, overwrite=True, console=False)
    assert "written for other weights than" in refused(capsys, a, again)


def test_two_ner_runs_compare_per_sentence_and_per_entity_type(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["sample-data", "--task", "ner", "--output-dir", str(tmp_path / "raw")]) == 0
    assert main(["build-dataset", "--task", "ner", "--data-dir", str(tmp_path / "raw"),
                 "--output-dir", str(data)]) == 0
    assert main(["build-vocab", "--data-dir", str(data)]) == 0
    runs = []
    for name, epochs in (("one", 1), ("six", 6)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(
            {"task": "ner", "learning_rate": 0.01, "batch_size": 8, "num_epochs": epochs,
             "embedding_dim": 8, "lstm_hidden_dim": 8}))
        train(folder, data, console=False)
        evaluate(folder, data)
        runs.append(folder)
    result = compare(*runs)
    assert result.unit == "sentence" and result.examples == len(rows(runs[0]))
    assert {m["metric"] for m in result.metrics} == {"accuracy", "precision", "recall", "f1"}
    right = [[r["true"] == r["predicted"] for r in rows(f)] for f in runs]
    assert result.mcnemar.only_a == sum(x and not y for x, y in zip(*right, strict=True))
    assert all(" " not in c["class"] for c in result.per_class)  # no seqeval averages
    capsys.readouterr()


def test_runs_on_different_data_or_not_evaluated_or_a_search_parent_are_refused(
        two_runs, sample_data, tmp_path, capsys):
    a, b = two_runs
    fewer = shutil.copytree(sample_data, tmp_path / "fewer")
    next(iter(sorted((fewer / "test_signs").iterdir()))).unlink()
    other = shutil.copytree(b, tmp_path / "other")
    evaluate(other, fewer)
    assert "evaluated on different data" in refused(capsys, a, other)

    fresh = tmp_path / "fresh"
    shutil.copytree(b, fresh, ignore=shutil.ignore_patterns("predictions_*", "metrics_*"))
    err = refused(capsys, a, fresh)
    assert "no evaluation on test with best weights yet; run torchstarter evaluate" in err

    parent = tmp_path / "search"
    parent.mkdir()
    (parent / "search.json").write_text('{"space": {"learning_rate": [0.1]}}')
    assert "a search parent, not one experiment" in refused(capsys, parent, a)
