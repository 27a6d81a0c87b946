"""Your task: what torchstarter trains. This package is yours to edit.

params.json names it ("task": "<this package's name>"); the engine uses the TASK object
at the bottom of this file. torchstarter.engine.task.Task lists every method a task may
define, each with its arguments and purpose.

    net.py       the tagger, its loss and its metrics: change the model here
    data.py      the vocabulary and a built split -> tensors: change for other data here
    __init__.py  the params your params.json may hold, and the task that joins the two

Building the data set from a corpus (Kaggle CSV or CoNLL files), building the
vocabulary, predicting from sentences and the per-type evaluation report are inherited
from the built-in NER task; override them in the class below (copy from
torchstarter/tasks/ner/) when you need to change them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from torchstarter.config import Field, Params
from torchstarter.engine.task import DataInfo, Loss, Metric
from torchstarter.tasks.ner import NerTask

from .data import describe_data, load_split
from .net import Tagger, entity_f1, entity_precision, entity_recall, loss_fn, token_accuracy


class ProjectTask(NerTask):
    # The keys of this task in params.json, besides the engine's (learning_rate,
    # batch_size, num_epochs, ...). A misspelt key, a wrong type or an out-of-range value
    # stops `train` with a message naming the key. Add a Field for every new knob.
    schema = {
        "embedding_dim": Field(int, "Size of the word embeddings.", default=50, min=1),
        "lstm_hidden_dim": Field(int, "Hidden units of each LSTM direction.", default=50,
                                 min=1),
        "bidirectional": Field(bool, "Read sentences in both directions.", default=False),
        "dropout": Field(float, "Dropout on the embeddings and before the output layer.",
                         default=0.0, min=0, max=1),
    }
    # Computed on train and val every epoch. Entity-level precision, recall and F1 (CoNLL
    # convention) are what people report; they are 0, not NaN, when no entity is found.
    metrics = {"accuracy": Metric(token_accuracy), "precision": entity_precision,
               "recall": entity_recall, "f1": entity_f1}
    # The validation metric that picks best.pt (a key of metrics, or "loss").
    default_metric = "f1"

    def describe_data(self, params: Params, data_dir: Path) -> DataInfo:
        return describe_data(params, data_dir)

    def load_split(self, params: Params, data_dir: Path, split: str, data_info: DataInfo):
        return load_split(params, data_dir, split, data_info)

    def build_model(self, params: Params, data_info: DataInfo) -> Tagger:
        """The model for these params and this vocabulary (describe_data's result)."""
        return Tagger(vocab_size=len(data_info["words"]), tags=data_info["tags"],
                      embedding_dim=params.embedding_dim, hidden_dim=params.lstm_hidden_dim,
                      bidirectional=params.bidirectional, dropout=params.dropout)

    def loss(self, outputs, labels: torch.Tensor) -> Loss:
        return loss_fn(outputs, labels)


TASK = ProjectTask()
