"""Every path form reaches the folder it names, and no command replaces a result it did
not make for that experiment (issue 17's reproductions that now succeed)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from torchstarter.cli.main import main


def run(capsys, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("form", [".", "./", "../e", "../e/"])
def test_build_dataset_into_the_empty_folder_you_are_in(form, sample_raw, tmp_path,
                                                        monkeypatch, capsys):
    here = tmp_path / "e"
    here.mkdir()
    monkeypatch.chdir(here)
    code, out, err = run(capsys, "build-dataset", "--data-dir", sample_raw, "--output-dir",
                         form)
    assert code == 0, err
    held = sorted(p.name for p in here.iterdir())
    assert {"build_report.json", "train_signs", "val_signs", "test_signs"} <= set(held)
    assert hidden_leftovers(here) == [] and hidden_leftovers(tmp_path) == []
    assert os.path.samefile(Path.cwd(), here)  # the folder you are in is still that folder


def test_build_dataset_through_a_link_writes_into_its_target_and_keeps_the_link(
        sample_raw, tmp_path, capsys):
    target, link = tmp_path / "real", tmp_path / "link"
    target.mkdir()
    link.symlink_to(target, target_is_directory=True)
    assert run(capsys, "build-dataset", "--data-dir", sample_raw, "--output-dir",
               f"{link}/")[0] == 0
    assert (target / "build_report.json").is_file() and link.is_symlink()
    assert run(capsys, "build-dataset", "--data-dir", sample_raw, "--output-dir", link,
               "--overwrite", "--seed", "1")[0] == 0
    assert link.is_symlink()
    assert json.loads((target / "build_report.json").read_text())["seed"] == 1
    assert hidden_leftovers(tmp_path) == []


def test_build_dataset_overwrite_replaces_its_own_output_and_leaves_nothing_hidden(
        sample_raw, tmp_path, capsys):
    out = tmp_path / "data"
    assert run(capsys, "build-dataset", "--data-dir", sample_raw, "--output-dir", out)[0] == 0
    assert run(capsys, "build-dataset", "--data-dir", sample_raw, "--output-dir", out,
               "--overwrite", "--seed", "7")[0] == 0
    assert json.loads((out / "build_report.json").read_text())["seed"] == 7
    assert hidden_leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def two_runs(sample_data, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("two")
    runs = []
    for name, seed in (("A", 1), ("B", 2)):
        folder = root / name
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps({
            "task": "signs", "learning_rate": 1e-3, "batch_size": 32, "num_epochs": 1,
            "num_channels": 4, "seed": seed, "tensorboard": False, "plots": False}))
        assert main(["train", "--data-dir", str(sample_data), "--model-dir", str(folder)]) == 0
        runs.append(folder)
    return runs[0], runs[1]


def test_evaluate_with_another_experiments_weights_never_replaces_this_ones_metrics(
        two_runs, sample_data, tmp_path, capsys):
    a, b = two_runs
    assert run(capsys, "evaluate", "--data-dir", sample_data, "--model-dir", a)[0] == 0
    own = (a / "metrics_test_best.json").read_bytes()
    assert json.loads(own)["weights"]["own"] is True

    code, out, err = run(capsys, "evaluate", "--data-dir", sample_data, "--model-dir", a,
                         "--restore", b / "best.pt")
    assert code == 0, err
    assert (a / "metrics_test_best.json").read_bytes() == own
    foreign = sorted(a.glob("metrics_test_from_best_*.json"))
    assert len(foreign) == 1 and str(foreign[0]) in out and "not this experiment's own" in out
    weights = json.loads(foreign[0].read_text())["weights"]
    assert weights["file"] == str((b / "best.pt").resolve()) and weights["own"] is False
    assert foreign[0].name == f"metrics_test_from_best_{weights['sha256'][:8]}.json"

    # a copy named like train's own file must not replace it either
    copied = tmp_path / "best_weights.pt"
    shutil.copyfile(a / "best.pt", copied)
    val_best = (a / "metrics_val_best_weights.json").read_bytes()
    assert run(capsys, "evaluate", "--data-dir", sample_data, "--model-dir", a, "--split",
               "val", "--restore", copied)[0] == 0
    assert (a / "metrics_val_best_weights.json").read_bytes() == val_best
    assert list(a.glob("metrics_val_from_best_weights_*.json"))


def test_evaluate_given_its_own_checkpoint_by_path_writes_its_own_file(two_runs, sample_data,
                                                                       capsys):
    a, _ = two_runs
    assert run(capsys, "evaluate", "--data-dir", sample_data, "--model-dir", a, "--restore",
               f"{a}/../{a.name}/last.pt")[0] == 0
    assert json.loads((a / "metrics_test_last.json").read_text())["weights"]["own"] is True


def test_synthesize_notes_a_history_nested_too_deep_and_still_draws_the_table(
        two_runs, tmp_path, capsys):
    a, _ = two_runs
    copy = shutil.copytree(a, tmp_path / "runs" / "A")
    (copy / "history.json").write_text("[" * 5000 + "]" * 5000)
    code, out, err = run(capsys, "synthesize", "--parent-dir", tmp_path / "runs")
    assert code == 0, err
    assert "Traceback" not in err
    assert "history.json: JSON nested too deep" in out + err


def test_compile_says_that_the_first_steps_take_long(make_experiment, sample_data,
                                                     monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)  # the message only
    model_dir = make_experiment(num_epochs=1, compile="default")
    assert main(["train", "--data-dir", str(sample_data), "--model-dir", str(model_dir)]) == 0
    assert "may take a minute or more" in (model_dir / "train.log").read_text()


def test_two_builds_of_one_new_folder_take_turns_and_the_second_is_one_line(tmp_path):
    import threading

    from torchstarter.errors import UserError
    from torchstarter.utils.folders import replace_folder

    out, filling, done = tmp_path / "data", threading.Event(), threading.Event()

    def slow_fill(tmp: Path) -> None:
        filling.set()
        done.wait(10)
        (tmp / "build_report.json").write_text("{}")

    first = threading.Thread(target=replace_folder, args=(out, slow_fill))
    first.start()
    assert filling.wait(10)
    outcome: list[object] = []

    def second() -> None:
        try:
            replace_folder(out, lambda tmp: outcome.append("filled"))
        except UserError as exc:
            outcome.append(str(exc))

    other = threading.Thread(target=second)
    other.start()
    other.join(0.5)
    assert other.is_alive() and outcome == []  # waiting its turn, nothing written
    done.set()
    first.join(10)
    other.join(10)
    assert outcome == [f"{out}: folder exists and is not empty; pass --overwrite to replace "
                       f"it or pick another --output-dir"]
    assert json.loads((out / "build_report.json").read_text()) == {}
    assert hidden_leftovers(tmp_path) == []
