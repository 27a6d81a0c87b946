"""The NER workflow through the command line on the shipped sample data."""

import json
import subprocess
import sys

from test_cli_end_to_end import cli


def test_sample_build_vocab_train_evaluate_predict(tmp_path):
    raw, data, model_dir = tmp_path / "raw", tmp_path / "data", tmp_path / "exp"
    cli("sample-data", "--task", "ner", "--output-dir", raw)
    out = cli("build-dataset", "--task", "ner", "--data-dir", raw, "--output-dir", data)
    assert "format: kaggle" in out.stdout
    vocab = cli("build-vocab", "--data_dir", data, "--min-count", "1")
    assert "from train" in vocab.stdout
    params = json.loads((data / "dataset_params.json").read_text())
    assert params["number_of_tags"] == 17
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({
        "task": "ner", "learning_rate": 0.01, "batch_size": 8, "num_epochs": 2,
        "bidirectional": True, "crf": True, "char_embedding_dim": 8, "char_filters": 8,
        "bucket_by_length": True}))
    cli("train", "--data-dir", data, "--model-dir", model_dir)
    history = json.loads((model_dir / "history.json").read_text())
    assert {"val_accuracy", "val_precision", "val_recall", "val_f1"} <= set(history[-1])
    cli("evaluate", "--data-dir", data, "--model-dir", model_dir)
    test = json.loads((model_dir / "metrics_test_best.json").read_text())
    assert set(test["per_type"]) >= {"micro avg"}
    assert all({"precision", "recall", "f1", "support"} <= set(v)
               for v in test["per_type"].values())

    text = cli("predict", "--model-dir", model_dir, "John lives in New York .").stdout
    assert text.splitlines()[0].startswith("John/")
    rows = json.loads(cli("predict", "--model-dir", model_dir, "--json",
                          "John lives in New York .", "Paris is big .").stdout)
    assert [len(r["tags"]) for r in rows] == [6, 4]
    assert all(set(e) == {"type", "text", "start", "end"} for r in rows for e in r["entities"])
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("John lives in New York .\n\nMary went to Berlin .\n")
    from_file = json.loads(cli("predict", "--model-dir", model_dir, "--json",
                               sentences).stdout)
    assert len(from_file) == 2
    piped = subprocess.run([sys.executable, "-m", "torchstarter", "predict", "--model-dir",
                            str(model_dir), "--json", "-"], input="Mary went to Berlin .\n",
                           capture_output=True, text=True, check=True)
    assert json.loads(piped.stdout)[0]["tokens"] == ["Mary", "went", "to", "Berlin", "."]


def test_a_vocabulary_change_after_training_is_refused_on_restore(tmp_path):
    raw, data, model_dir = tmp_path / "raw", tmp_path / "data", tmp_path / "exp"
    cli("sample-data", "--task", "ner", "--output-dir", raw)
    cli("build-dataset", "--task", "ner", "--data-dir", raw, "--output-dir", data)
    cli("build-vocab", "--data-dir", data)
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({
        "task": "ner", "learning_rate": 0.01, "batch_size": 8, "num_epochs": 1}))
    cli("train", "--data-dir", data, "--model-dir", model_dir)
    cli("build-vocab", "--data-dir", data, "--lowercase")
    result = cli("train", "--data-dir", data, "--model-dir", model_dir, "--restore", "last",
                 "--set", "num_epochs=2", check=False)
    assert result.returncode == 2 and "vocabulary" in result.stderr
