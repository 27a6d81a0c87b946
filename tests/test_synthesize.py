"""`synthesize`: the results table of a tree of experiments, whatever state they are in."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from torchstarter.cli.main import main
from torchstarter.errors import UserError
from torchstarter.experiment.evaluation import evaluate
from torchstarter.experiment.training import train
from torchstarter.report.collect import Experiment
from torchstarter.report.synthesize import build_table, synthesize, synthesize_report
from torchstarter.tasks.registry import resolve_params

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BASE = {"task": "signs", "learning_rate": 1e-3, "batch_size": 32, "num_epochs": 4,
        "num_channels": 4, "dropout_rate": 0.5}


def fake_run(folder: Path, params: dict | None = None, epochs: int | None = None,
             metrics: tuple[str, ...] = ("accuracy",), metric: str = "accuracy",
             mode: str = "max", status: str | None = None, test: dict | None = None,
             peak: float = 0.9) -> Path:
    """An experiment folder as `train` leaves it after `epochs` epochs (None: never run).

    The val curve of every metric rises to `peak` at the last epoch, so the best epoch is
    the last one for 'max' metrics.
    """
    folder.mkdir(parents=True, exist_ok=True)
    params = {**BASE, **(params or {})}
    (folder / "params.json").write_text(json.dumps(params))
    if epochs is None:
        return folder
    # What train writes: every default filled in (metric forced, to fake other tasks).
    resolved = {**resolve_params(params, "params.json")[1].to_dict(), "metric": metric,
                "metric_mode": mode}
    (folder / "resolved_params.json").write_text(json.dumps(resolved))
    history = []
    for epoch in range(1, epochs + 1):
        value = peak * epoch / epochs
        row = {"epoch": epoch, "train_loss": 2.0 / epoch, "val_loss": 2.2 / epoch}
        for name in metrics:
            row[f"train_{name}"] = value
            row[f"val_{name}"] = value
        history.append({**row, "lr": 1e-3, "seconds": 0.5})
    (folder / "history.json").write_text(json.dumps(history))
    if history:
        best = max(history, key=lambda r: r[f"val_{metric}"]) if mode == "max" else \
            min(history, key=lambda r: r[f"val_{metric}"])
        (folder / "metrics_val_best_weights.json").write_text(json.dumps(
            {"epoch": best["epoch"], **{k[4:]: v for k, v in best.items()
                                        if k.startswith("val_")}}))
    if status is not None:
        (folder / "run.json").write_text(json.dumps({"status": status, "error": None}))
    if test is not None:
        (folder / "metrics_test_best.json").write_text(json.dumps({**test, "examples": 120}))
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["synthesize", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5000, path  # a real chart, not an empty canvas
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width >= 400 and image.height >= 300


def test_empty_tree_writes_a_note_and_exits_0(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    code, out, err = run_cli(capsys, "--parent-dir", tmp_path)
    assert code == 0 and err == ""
    assert "No experiments found" in out
    assert "No experiments found" in (tmp_path / "results.md").read_text()
    assert synthesize(tmp_path).startswith("No experiments found")


def test_missing_parent_dir_is_a_user_error_with_exit_code_2(tmp_path, capsys):
    code, out, err = run_cli(capsys, "--parent_dir", tmp_path / "nope")
    assert code == 2
    assert err.strip() == f"error: {tmp_path / 'nope'}: folder not found; check --parent-dir"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        synthesize(a_file)


def test_mixed_tree_gives_blank_cells_and_notes_never_a_crash(tmp_path, capsys):
    fake_run(tmp_path / "done", {"learning_rate": 1e-2}, epochs=4, status="finished",
             test={"accuracy": 0.81, "loss": 0.5}, peak=0.95)
    fake_run(tmp_path / "half", {"learning_rate": 1e-3}, epochs=2, peak=0.7)  # no run.json
    fake_run(tmp_path / "waiting", {"learning_rate": 1e-4})
    fake_run(tmp_path / "other_metrics", {"learning_rate": 3e-3}, epochs=4,
             metrics=("accuracy", "f1"), status="finished", peak=0.8)
    broken = fake_run(tmp_path / "broken_history", {"learning_rate": 5e-3}, epochs=3,
                      status="interrupted", peak=0.6)
    (broken / "history.json").write_text('[{"epoch": 1, ')
    bad_best = fake_run(tmp_path / "broken_best", {"learning_rate": 2e-3}, epochs=4,
                        status="finished", peak=0.99)
    (bad_best / "metrics_val_best_weights.json").write_text("not json")

    code, out, err = run_cli(capsys, "--parent-dir", tmp_path)
    assert code == 0 and err == ""
    rows = {r["name"]: r for r in read_csv(tmp_path / "results.csv")}
    assert list(rows) == ["done", "other_metrics", "half", "broken_history", "broken_best",
                          "waiting"]
    assert [rows[n]["status"] for n in rows] == ["finished", "finished", "incomplete",
                                                 "interrupted", "finished", "not started"]
    assert rows["done"]["val_accuracy"] == "0.95" and rows["done"]["test_accuracy"] == "0.81"
    assert rows["half"]["epochs"] == "2" and rows["half"]["test_accuracy"] == ""
    assert rows["waiting"]["epochs"] == "0" and rows["waiting"]["val_accuracy"] == ""
    assert rows["other_metrics"]["val_f1"] == "0.8" and rows["done"]["val_f1"] == ""
    assert rows["broken_history"]["epochs"] == "" and rows["broken_best"]["val_accuracy"] == ""
    assert "broken_history/history.json: malformed JSON at line 1" in out
    assert "broken_best/metrics_val_best_weights.json: malformed JSON" in out
    assert "metric sets differ: val_f1 is blank for broken_history, done, half" in out
    assert "2 of 6 experiments have no validation metrics (finished, not started): " \
           "broken_best, waiting" in out
    markdown = (tmp_path / "results.md").read_text()
    assert "| done " in markdown and "malformed JSON" in markdown


def test_nested_experiments_are_found_and_archives_and_search_bases_skipped(tmp_path):
    fake_run(tmp_path / "signs" / "base_model", epochs=2, status="finished")
    search = fake_run(tmp_path / "signs" / "lr_search")  # the search's base params only
    fake_run(search / "lr_0.01", {"learning_rate": 1e-2}, epochs=2, status="finished")
    fake_run(search / "lr_0.001", {"learning_rate": 1e-3}, epochs=2, status="running")
    fake_run(search / "lr_0.001" / "previous_runs" / "20240101-000000", epochs=1)
    fake_run(tmp_path / "signs" / ".hidden" / "x", epochs=1)
    report = synthesize_report(tmp_path)
    names = sorted(row["name"] for row in report.table.rows)
    assert names == ["signs/base_model", "signs/lr_search/lr_0.001", "signs/lr_search/lr_0.01"]
    status = {row["name"]: row["status"] for row in report.table.rows}
    # run.json says running, but no process holds the lock: a killed run
    assert status["signs/lr_search/lr_0.001"] == "stopped"
    assert "no live process holds the run lock (killed?) for signs/lr_search/lr_0.001;" \
        in report.text


def test_the_parent_itself_is_an_experiment_once_it_has_run(tmp_path):
    fake_run(tmp_path, epochs=3, status="finished")
    report = synthesize_report(tmp_path)
    assert [row["name"] for row in report.table.rows] == ["."]
    assert report.table.rows[0]["epochs"] == 3


def test_columns_only_for_the_params_that_differ(tmp_path):
    fake_run(tmp_path / "a", {"learning_rate": 1e-2, "num_workers": 2}, epochs=2)
    fake_run(tmp_path / "b", {"learning_rate": 1e-3, "num_workers": 0}, epochs=2)
    fake_run(tmp_path / "c", {"learning_rate": 1e-3, "optimizer": "adam"})  # never trained
    columns = synthesize_report(tmp_path).table.columns
    assert columns == ["name", "learning_rate", "val_accuracy", "val_loss", "best_epoch",
                       "epochs", "status"]
    header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert header == ",".join(columns)


@pytest.mark.parametrize("metric, mode, expected", [
    ("accuracy", "max", ["high", "mid", "low", "none"]),
    ("loss", "min", ["low", "mid", "high", "none"]),
])
def test_rows_are_sorted_best_first_and_blank_last(tmp_path, metric, mode, expected):
    for name, peak in (("mid", 0.5), ("low", 0.2), ("high", 0.8)):
        folder = fake_run(tmp_path / name, {"dropout_rate": peak}, epochs=1, metric=metric,
                          mode=mode)
        (folder / "metrics_val_best_weights.json").write_text(
            json.dumps({"epoch": 1, "loss": peak, "accuracy": peak}))
    fake_run(tmp_path / "none", {"dropout_rate": 0.1}, epochs=0, metric=metric, mode=mode)
    report = synthesize_report(tmp_path)
    assert [row["name"] for row in report.table.rows] == expected
    better = "higher" if mode == "max" else "lower"
    assert f"best first by val_{metric} ({better} is better)" in report.text
    assert report.table.columns[2] == f"val_{metric}"


def test_experiments_choosing_different_metrics_sort_by_the_first_and_say_so(tmp_path):
    fake_run(tmp_path / "a_signs", {"learning_rate": 1e-2}, epochs=2, peak=0.5)
    fake_run(tmp_path / "b_ner", {"learning_rate": 1e-3}, epochs=2, metrics=("f1",),
             metric="f1", peak=0.9)
    fake_run(tmp_path / "c_signs", {"learning_rate": 1e-4}, epochs=2, peak=0.7)
    report = synthesize_report(tmp_path)
    assert [row["name"] for row in report.table.rows] == ["c_signs", "a_signs", "b_ner"]
    assert "select on different metrics (b_ner use f1 (max)); rows are sorted by val " \
           "accuracy (max) as in a_signs" in report.text


def test_a_search_gets_a_plot_per_searched_param_and_overlaid_curves(tmp_path, capsys):
    for i, (lr, optimizer) in enumerate([(1e-4, "adam"), (1e-3, "sgd"), (1e-2, "adam"),
                                         (1e-1, "sgd")]):
        fake_run(tmp_path / f"run_{i}", {"learning_rate": lr, "optimizer": optimizer},
                 epochs=3 + i, status="finished", peak=0.5 + 0.1 * i)
    code, out, _ = run_cli(capsys, "--parent-dir", tmp_path)
    assert code == 0
    for name in ("search_learning_rate.png", "search_optimizer.png", "learning_curves.png"):
        assert_png(tmp_path / name)
        assert f"wrote {tmp_path / name}" in out
        assert f"]({name})" in (tmp_path / "results.md").read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_single_experiment_gets_no_search_plots(tmp_path):
    fake_run(tmp_path / "only", epochs=2)
    report = synthesize_report(tmp_path)
    assert [p.name for p in report.written] == ["results.md", "results.csv"]
    assert not list(tmp_path.glob("*.png"))


def test_synthesize_reads_what_train_and_evaluate_really_write(sample_data, tmp_path):
    for name, lr in (("lr_small", 1e-4), ("lr_big", 3e-3)):
        folder = tmp_path / "search" / name
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({**TINY, "num_epochs": 1,
                                                        "learning_rate": lr}))
        train(folder, sample_data, console=False)
    evaluate(tmp_path / "search" / "lr_big", sample_data, "test", "best")
    report = synthesize_report(tmp_path / "search")
    rows = {row["name"]: row for row in report.table.rows}
    assert report.table.varying == ["learning_rate"]
    assert {r["status"] for r in rows.values()} == {"finished"}
    assert 0 <= rows["lr_big"]["test_accuracy"] <= 1 and "test_accuracy" in rows["lr_small"]
    assert rows["lr_small"]["test_accuracy"] is None
    assert_png(tmp_path / "search" / "learning_curves.png")


values = st.one_of(st.none(), st.just(math.nan), st.floats(-10, 10, allow_nan=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scores=st.lists(values, min_size=1, max_size=8), mode=st.sampled_from(["max", "min"]))
def test_sorting_puts_the_best_first_and_blanks_last_for_any_values(scores, mode):
    experiments = [Experiment(folder=Path(f"e{i}"), name=f"e{i}",
                              params={"task": "signs", "seed": i}, metric="accuracy",
                              mode=mode,
                              val_best=None if s is None else {"accuracy": s},
                              status="finished")
                   for i, s in enumerate(scores)]
    table = build_table(experiments)
    got = [row.get("val_accuracy") for row in table.rows]
    present = [v for v in got if v is not None and not math.isnan(v)]
    assert got[:len(present)] == present  # every blank after every value
    assert present == sorted(present, reverse=mode == "max")
    assert len(table.rows) == len(scores)


def test_a_plot_that_fails_becomes_a_note_and_the_table_is_still_written(tmp_path,
                                                                          monkeypatch):
    from torchstarter.report import plots

    def broken(*args):
        raise ValueError("no room")

    monkeypatch.setattr(plots, "search_plot", broken)
    for lr in (1e-3, 1e-2):
        fake_run(tmp_path / f"lr_{lr}", {"learning_rate": lr}, epochs=2, status="finished")
    report = synthesize_report(tmp_path)
    assert "search_learning_rate.png: could not draw (ValueError: no room)" in report.text
    assert [p.name for p in report.written] == ["results.md", "results.csv",
                                                "learning_curves.png"]
    assert len(read_csv(tmp_path / "results.csv")) == 2


def test_a_results_md_the_user_wrote_is_never_replaced(tmp_path, capsys):
    fake_run(tmp_path / "a", epochs=2)
    (tmp_path / "results.md").write_text("# my notes\n")
    assert main(["synthesize", "--parent-dir", str(tmp_path)]) == 2
    assert "was not written by synthesize" in capsys.readouterr().err
    assert (tmp_path / "results.md").read_text() == "# my notes\n"
    (tmp_path / "results.md").unlink()
    synthesize(tmp_path)
    synthesize(tmp_path)  # its own file it rewrites
    assert (tmp_path / "results.md").read_text().startswith("<!-- written by torchstarter")


def test_a_plot_of_a_parameter_that_no_longer_varies_is_removed(tmp_path):
    fake_run(tmp_path / "lr_small", {"learning_rate": 1e-4}, epochs=2, peak=0.7)
    fake_run(tmp_path / "lr_large", {"learning_rate": 1e-2}, epochs=2, peak=0.8)
    synthesize(tmp_path)
    assert (tmp_path / "search_learning_rate.png").exists()
    for item in (tmp_path / "lr_large").iterdir():
        item.unlink()
    (tmp_path / "lr_large").rmdir()
    fake_run(tmp_path / "lr_small_again", {"learning_rate": 1e-4}, epochs=2, peak=0.75)
    synthesize(tmp_path)
    assert not (tmp_path / "search_learning_rate.png").exists()


def test_params_edited_after_the_run_are_noted(tmp_path):
    folder = fake_run(tmp_path / "copied", epochs=2)
    params = json.loads((folder / "params.json").read_text())
    (folder / "params.json").write_text(json.dumps({**params, "learning_rate": 0.01}))
    text = synthesize(tmp_path)
    assert "copied: params.json differs from the params its run used (learning_rate)" in text


def test_an_untrained_experiment_of_a_user_task_adds_no_default_columns(tmp_path):
    """Defaults of a user's task are unknown until it runs: absent keys are not differences."""
    fake_run(tmp_path / "trained", epochs=2)
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "params.json").write_text(json.dumps({**BASE, "task": "my_task"}))
    table = synthesize_report(tmp_path).table
    assert table.varying == ["task"]


def test_a_params_json_saved_with_a_byte_order_mark_reads_like_any_other(tmp_path):
    fake_run(tmp_path / "a", {"learning_rate": 1e-2}, epochs=2)
    bom = fake_run(tmp_path / "b", {"learning_rate": 1e-3}, epochs=2)
    path = bom / "params.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Notepad saves UTF-8
    report = synthesize_report(tmp_path)
    assert "params.json" not in report.text and "malformed" not in report.text
    assert sorted(r["learning_rate"] for r in report.table.rows) == [1e-3, 1e-2]
