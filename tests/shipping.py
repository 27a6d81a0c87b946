"""Small trained models of every built-in task, for the export and serve tests.

Trained once per test session (a few seconds each) on the built-in sample data; the NER
tagger has every part an export must carry: two bidirectional layers, a character CNN,
case features and a CRF.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torchstarter.experiment.training import train
from torchstarter.tasks import load_task

PARAMS = {
    "signs": {"task": "signs", "learning_rate": 1e-3, "batch_size": 32, "num_epochs": 1,
              "num_channels": 4, "dropout_rate": 0.5},
    "images": {"task": "images", "learning_rate": 1e-3, "batch_size": 32, "num_epochs": 1,
               "num_channels": 4},
    "ner": {"task": "ner", "learning_rate": 0.01, "batch_size": 8, "num_epochs": 2,
            "embedding_dim": 16, "lstm_hidden_dim": 12, "bidirectional": True,
            "num_layers": 2, "crf": True, "char_embedding_dim": 8, "char_filters": 8,
            "case_features": True},
}


@dataclass(frozen=True)
class Shipped:
    task: str
    model_dir: Path
    data_dir: Path
    raw_dir: Path


def train_tiny(task_name: str, root: Path) -> Shipped:
    task = load_task(task_name)
    raw, data, model_dir = root / "raw", root / "data", root / "exp"
    task.write_sample_data(raw)
    task.build_dataset(task.build_options(raw, data))
    if task_name == "ner":
        task.build_vocab(task.vocab_options(data))
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps(PARAMS[task_name]))
    train(model_dir, data, console=False)
    return Shipped(task_name, model_dir, data, raw)
