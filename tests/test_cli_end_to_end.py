"""The README workflow through the real command line, on the built-in data."""

import json
import subprocess
import sys

import pytest

from torchstarter.cli.main import main


def cli(*args, cwd=None, check=True):
    result = subprocess.run([sys.executable, "-m", "torchstarter", *map(str, args)],
                            capture_output=True, text=True, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_build_train_evaluate_predict(sample_raw, make_experiment, tmp_path):
    data = tmp_path / "data"
    out = cli("build-dataset", "--data_dir", sample_raw, "--output-dir", data)
    assert "train:" in out.stdout and "val images equal to a train image" in out.stdout
    model_dir = make_experiment(num_epochs=2)
    cli("train", "--data-dir", data, "--model_dir", model_dir)
    for name in ("train.log", "last.pt", "best.pt", "metrics_val_best_weights.json",
                 "metrics_val_last_weights.json", "history.json", "resolved_params.json"):
        assert (model_dir / name).is_file(), name
    history = json.loads((model_dir / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
            "seconds"} <= set(history[0])

    cli("evaluate", "--data-dir", data, "--model-dir", model_dir, "--split", "test")
    test = json.loads((model_dir / "metrics_test_best.json").read_text())
    assert 0 <= test["accuracy"] <= 1 and test["examples"] == 120

    images = sorted((data / "test_signs").iterdir())[:2]
    table = cli("predict", "--model-dir", model_dir, *images)
    assert images[0].name in table.stdout and "p(5)" in table.stdout
    rows = json.loads(cli("predict", "--model-dir", model_dir, "--json",
                          data / "test_signs").stdout)
    assert len(rows) == 120
    assert abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-3


def test_a_second_fresh_train_refuses_then_overwrite_archives(sample_data, make_experiment):
    model_dir = make_experiment(num_epochs=1)
    cli("train", "--data-dir", sample_data, "--model-dir", model_dir)
    before = (model_dir / "last.pt").read_bytes()
    again = cli("train", "--data-dir", sample_data, "--model-dir", model_dir, check=False)
    assert again.returncode == 2
    assert "already holds a run" in again.stderr and "--restore last" in again.stderr
    assert (model_dir / "last.pt").read_bytes() == before
    cli("train", "--data-dir", sample_data, "--model-dir", model_dir, "--overwrite")
    archived = list((model_dir / "previous_runs").iterdir())
    assert len(archived) == 1 and (archived[0] / "last.pt").read_bytes() == before


@pytest.mark.parametrize("params, message", [
    ('{"task": "signs", "learning_rate": 1e-3, "batch_size": 32, "num_epoch": 2}',
     "unknown key 'num_epoch' (did you mean 'num_epochs'?)"),
    ('{"task": "signs", "learning_rate": 1e-3,\n "batch_size": 32 "num_epochs": 2}',
     "params.json:2:19: malformed JSON"),
])
def test_bad_params_give_one_line_and_exit_code_2(params, message, sample_data, tmp_path):
    (tmp_path / "params.json").write_text(params)
    result = cli("train", "--data-dir", sample_data, "--model-dir", tmp_path, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.json"]


def test_restore_without_a_checkpoint_is_a_clear_error(sample_data, make_experiment):
    model_dir = make_experiment()
    result = cli("train", "--data-dir", sample_data, "--model-dir", model_dir,
                 "--restore_file", "last", check=False)
    assert result.returncode == 2
    assert "last.pt: checkpoint not found" in result.stderr


def test_every_subcommand_documents_its_flags():
    for command in ("build-dataset", "train", "evaluate", "predict", "sample-data", "demo"):
        text = cli(command, "--help").stdout
        assert "--" in text
    build_help = cli("build-dataset", "--help").stdout
    assert "--drop-leaks" in build_help and "--data_dir" in build_help


def test_sample_data_never_writes_into_a_folder_that_holds_something(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "ner_dataset.csv").write_text("my corpus\n")
    result = cli("sample-data", "--task", "ner", "--output-dir", tmp_path / "mine", check=False)
    assert result.returncode == 2 and "not an empty folder" in result.stderr
    assert (tmp_path / "mine" / "ner_dataset.csv").read_text() == "my corpus\n"


def test_the_ner_demo_says_beside_its_predictions_that_the_sample_is_too_small(tmp_path,
                                                                                capsys):
    assert main(["demo", "--task", "ner", "--output-dir", str(tmp_path / "demo"),
                 "--set", "num_epochs=1"]) == 0
    out = capsys.readouterr().out
    predicted = out.index("== predict")
    note = out.index("NOTE: the built-in NER sample has 82 sentences, far too few to learn")
    assert predicted < note < out.index("task    split")  # after the tags, before the table
