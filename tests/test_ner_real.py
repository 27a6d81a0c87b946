"""Integration on the real Kaggle NER corpus, when ../shared/data holds it."""

import json

import pytest
from conftest import SHARED_DATA
from test_cli_end_to_end import cli

CORPUS = SHARED_DATA / "kaggle_ner" / "ner_dataset.csv.zip"
pytestmark = pytest.mark.skipif(not CORPUS.is_file(), reason=f"Kaggle NER corpus not at {CORPUS}")


def test_kaggle_corpus_builds_and_one_epoch_beats_the_all_o_tagger(tmp_path):
    data, model_dir = tmp_path / "data", tmp_path / "exp"
    cli("build-dataset", "--task", "ner", "--data-dir", CORPUS, "--output-dir", data)
    cli("build-vocab", "--data-dir", data)
    sizes = json.loads((data / "dataset_params.json").read_text())
    assert (sizes["train_size"], sizes["val_size"], sizes["test_size"]) == (33571, 7194, 7194)
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({
        "task": "ner", "learning_rate": 0.01, "batch_size": 64, "num_epochs": 1,
        "bucket_by_length": True}))
    cli("train", "--data-dir", data, "--model-dir", model_dir)
    val = json.loads((model_dir / "metrics_val_last_weights.json").read_text())
    assert val["accuracy"] > 0.90  # an all-O tagger scores about 0.85
    assert val["f1"] > 0.3
