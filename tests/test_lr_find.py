"""lr-find: a bounded sweep, a documented suggestion, and nothing of the run left behind."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from torchstarter.cli.main import main
from torchstarter.experiment.lr_find import suggest
from torchstarter.experiment.training import train

FAST = {"num_threads": 1, "batch_size": 8}


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_suggestion_is_the_steepest_descent_per_decade():
    lrs = [10 ** (-7 + i * 0.1) for i in range(60)]
    # flat, then a fall that is steepest around lr 1e-3 (i = 40), then a rise
    smoothed = [2 - math.tanh((i - 40) / 4) for i in range(55)] + [3, 4, 5, 6, 7]
    assert suggest(lrs, smoothed) == pytest.approx(lrs[39], rel=0.3)
    assert suggest(lrs, [1.0] * 60) is None  # a loss that never falls suggests nothing


def test_a_sweep_writes_its_result_and_no_checkpoint_and_keeps_the_rng(
        make_experiment, sample_data, capsys):
    model_dir = make_experiment(**FAST)
    params_before = (model_dir / "params.json").read_bytes()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert main(["lr-find", "--model-dir", str(model_dir), "--data-dir", str(sample_data),
                 "--steps", "30"]) == 0
    assert torch.equal(torch.rand(3), expected)  # the process's random state is as it was
    out = capsys.readouterr().out
    assert "suggested learning_rate" in out and "params.json is unchanged" in out
    result = json.loads((model_dir / "lr_find.json").read_text())
    assert 0 < len(result["lrs"]) <= 30 and len(result["losses"]) == len(result["lrs"])
    assert result["lrs"][0] == pytest.approx(1e-7)
    assert all(a < b for a, b in zip(result["lrs"], result["lrs"][1:], strict=False))
    assert "steepest descent" in result["rule"] and not result["applied"]
    assert sorted(p.name for p in model_dir.iterdir()) == \
        ["lr_find.json", "lr_find.png", "params.json"]
    assert (model_dir / "params.json").read_bytes() == params_before


def test_apply_writes_the_suggestion_into_params_and_keeps_the_other_keys(
        make_experiment, sample_data):
    model_dir = make_experiment(**FAST)
    before = json.loads((model_dir / "params.json").read_text())
    assert main(["lr-find", "--model-dir", str(model_dir), "--data-dir", str(sample_data),
                 "--steps", "30", "--apply"]) == 0
    after = json.loads((model_dir / "params.json").read_text())
    result = json.loads((model_dir / "lr_find.json").read_text())
    assert after["learning_rate"] == pytest.approx(result["suggestion"], rel=1e-2)
    assert {k: v for k, v in after.items() if k != "learning_rate"} == \
        {k: v for k, v in before.items() if k != "learning_rate"}
    assert result["applied"] is True
    train(model_dir, sample_data, console=False)  # a run can start from the applied rate


def test_a_folder_with_a_trained_run_is_refused_unless_forced_and_never_touched(
        make_experiment, sample_data, capsys):
    model_dir = make_experiment(num_epochs=1, **FAST)
    train(model_dir, sample_data, console=False)
    before = digest(model_dir)
    args = ["lr-find", "--model-dir", str(model_dir), "--data-dir", str(sample_data),
            "--steps", "20"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a trained run" in err and "--force" in err and "\n" not in err
    assert main([*args, "--force", "--apply"]) == 2
    assert "--apply would make params.json disagree" in capsys.readouterr().err
    assert digest(model_dir) == before
    assert main([*args, "--force"]) == 0
    after = digest(model_dir)
    assert {k: v for k, v in after.items() if not k.startswith("lr_find")} == before


@pytest.mark.parametrize("flags, words", [
    (["--start-lr", "1", "--end-lr", "0.1"], "need 0 < start < end"),
    (["--steps", "3"], "too few for a suggestion"),
    (["--divergence", "1"], "must be above 1"),
])
def test_bad_sweep_settings_are_one_line(make_experiment, sample_data, capsys, flags, words):
    model_dir = make_experiment(**FAST)
    assert main(["lr-find", "--model-dir", str(model_dir), "--data-dir", str(sample_data),
                 *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert sorted(p.name for p in model_dir.iterdir()) == ["params.json"]


def test_a_sweep_into_nan_stops_and_writes_valid_json(make_experiment, sample_data):
    model_dir = make_experiment(**FAST)
    assert main(["lr-find", "--model-dir", str(model_dir), "--data-dir", str(sample_data),
                 "--steps", "40", "--start-lr", "1", "--end-lr", "1e30",
                 "--divergence", "1e300"]) == 0

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    result = json.loads((model_dir / "lr_find.json").read_text(), parse_constant=refuse)
    assert "not finite" in result["stopped"] or "above" in result["stopped"]


def test_params_the_task_refuses_are_named_with_their_file(tmp_path, capsys):
    from torchstarter.tasks import load_task

    task = load_task("ner")
    task.write_sample_data(tmp_path / "raw")
    task.build_dataset(task.build_options(tmp_path / "raw", tmp_path / "data"))
    task.build_vocab(task.vocab_options(tmp_path / "data", min_count=1))
    model_dir = tmp_path / "exp"
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({
        "task": "ner", "learning_rate": 1e-3, "batch_size": 4, "num_epochs": 1,
        "crf": True, "class_weights": "balanced"}))
    assert main(["lr-find", "--model-dir", str(model_dir), "--data-dir",
                 str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {model_dir / 'params.json'}: key 'class_weights'")
    assert "\n" not in err
