"""`evaluate` writes every example's result (predictions_<split>_<restore>.jsonl) and a 95%
bootstrap interval for each metric; the file's parts add up to the metrics file's
numbers, so an interval or a comparison built from them describes the same result."""

import json

import numpy as np
import pytest

from torchstarter.cli.main import main
from torchstarter.engine.examples import Examples
from torchstarter.experiment.evaluation import evaluate
from torchstarter.experiment.predictions import split_hash
from torchstarter.experiment.training import train
from torchstarter.tasks import load_task

NER_TINY = {"task": "ner", "learning_rate": 0.01, "batch_size": 8, "num_epochs": 2,
            "embedding_dim": 8, "lstm_hidden_dim": 8}


def read(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def summed(rows, metric):
    return np.sum([row["parts"][metric] for row in rows], axis=0)


def test_signs_rows_name_every_test_image_and_add_up_to_the_metrics(make_experiment,
                                                                     sample_data):
    model_dir = make_experiment(num_epochs=2)
    train(model_dir, sample_data, console=False)
    metrics, _ = evaluate(model_dir, sample_data)
    header, rows = read(model_dir / metrics["predictions_file"])
    assert metrics["predictions_file"] == "predictions_test_best.jsonl"
    files = sorted(p.name for p in (sample_data / "test_signs").iterdir())
    assert [row["id"] for row in rows] == files
    assert header["examples"] == len(rows) == metrics["examples"]
    assert header["task"] == "signs" and header["split"] == "test"
    assert header["weights_sha256"] == metrics["weights"]["sha256"]
    for row in rows:
        assert row["true"] == row["id"].split("_")[0]  # the label is in the file name
        probs = row["probabilities"]
        assert sum(probs.values()) == pytest.approx(1, abs=1e-4)
        assert row["predicted"] == max(probs, key=probs.get)
        assert row["correct"] == (row["predicted"] == row["true"])
    hits, count = summed(rows, "accuracy")
    assert hits / count == pytest.approx(metrics["accuracy"], abs=1e-12)
    assert np.mean([row["loss"] for row in rows]) == pytest.approx(metrics["loss"], abs=1e-4)
    interval = metrics["intervals"]["accuracy"]
    assert interval["low"] <= metrics["accuracy"] <= interval["high"]
    assert (interval["resamples"], interval["level"], interval["over"]) == (1000, 0.95,
                                                                            "examples")


def test_the_split_hash_names_the_examples_not_the_run(make_experiment, sample_data):
    hashes = {}
    for name, lr in (("a", 1e-3), ("b", 1e-2)):
        model_dir = make_experiment(name, num_epochs=1, learning_rate=lr)
        train(model_dir, sample_data, console=False)
        for split in ("test", "val"):
            metrics, _ = evaluate(model_dir, sample_data, split)
            hashes[name, split] = read(model_dir / metrics["predictions_file"])[0][
                "split_sha256"]
    assert hashes["a", "test"] == hashes["b", "test"] != hashes["a", "val"]
    rows = [{"id": "x.jpg", "true": "1"}]
    assert split_hash(Examples(rows)) != split_hash(Examples([{"id": "x.jpg", "true": "2"}]))


def test_ner_rows_are_sentences_whose_parts_give_token_accuracy_and_entity_f1(tmp_path):
    task = load_task("ner")
    raw, data = tmp_path / "raw", tmp_path / "data"
    assert main(["sample-data", "--task", "ner", "--output-dir", str(raw)]) == 0
    assert main(["build-dataset", "--task", "ner", "--data-dir", str(raw), "--output-dir",
                 str(data)]) == 0
    assert main(["build-vocab", "--data-dir", str(data)]) == 0
    model_dir = tmp_path / "ner"
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps(NER_TINY))
    train(model_dir, data, console=False)
    metrics, _ = evaluate(model_dir, data)
    header, rows = read(model_dir / metrics["predictions_file"])
    assert header["unit"] == header["correct_unit"] == "sentence"
    assert all(row["correct"] == (row["true"] == row["predicted"]) for row in rows)
    sentences = (data / "test" / "sentences.txt").read_text(encoding="utf-8").splitlines()
    assert [" ".join(row["words"]) for row in rows] == sentences
    assert all(len(row["true"]) == len(row["predicted"]) == len(row["words"]) for row in rows)
    right, tokens = summed(rows, "accuracy")
    assert right / tokens == pytest.approx(metrics["accuracy"], abs=1e-9)
    tp, fp, fn = summed(rows, "f1")
    assert (2 * tp / (2 * tp + fp + fn) if tp else 0.0) == pytest.approx(metrics["f1"],
                                                                         abs=1e-9)
    assert summed(rows, "precision")[1] == tp + fp and summed(rows, "recall")[1] == tp + fn
    assert set(metrics["intervals"]) == {"accuracy", "precision", "recall", "f1"}
    assert metrics["intervals"]["f1"]["over"] == "sentences"
    assert header["task"] == task.name == "ner"


def test_a_task_without_the_examples_hook_gets_metrics_without_intervals(tmp_path):
    from test_distributed import TOKENS_TASK, make

    (tmp_path / "tokens.py").write_text(TOKENS_TASK)
    model_dir = make(tmp_path, "plain", num_epochs=1)
    train(model_dir, tmp_path, console=False)
    metrics, _ = evaluate(model_dir, tmp_path)
    assert "intervals" not in metrics and "predictions_file" not in metrics
    assert not list(model_dir.glob("predictions_*"))


def test_evaluate_prints_each_interval_beside_its_metric(make_experiment, sample_data, capsys):
    model_dir = make_experiment(num_epochs=1)
    train(model_dir, sample_data, console=False)
    assert main(["evaluate", "--model-dir", str(model_dir), "--data-dir",
                 str(sample_data)]) == 0
    out = capsys.readouterr().out
    assert "accuracy 95% CI" in out
    assert "95% CI: percentile bootstrap over the 120 examples, 1000 resamples, seed" in out
    assert "predictions_test_best.jsonl (every example)" in out


def test_ids_that_are_odd_file_names_survive_the_round_trip(tmp_path):
    from torchstarter.engine.examples import RATIO
    from torchstarter.experiment.predictions import read_predictions, write_predictions

    ids = ["a\u2028b.jpg", "c\x85d.jpg", "\udcff-undecodable.jpg", "plain.jpg"]
    rows = [{"id": name, "true": "1", "predicted": "1"} for name in ids]
    parts = np.ones((4, 2))
    path = tmp_path / "predictions_test_best.jsonl"
    write_predictions(path, Examples(rows, {"accuracy": (parts, RATIO)}), {"task": "t"})
    header, back = read_predictions(path)
    assert [row["id"] for row in back] == ids and header["examples"] == 4
