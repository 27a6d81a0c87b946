"""Your task: what torchstarter trains. This package is yours to edit.

params.json names it ("task": "<this package's name>") and the engine uses only the
names defined here; torchstarter.tasks.base describes each one.

    net.py       the tagger, its loss and its metrics: change the model here
    data.py      the vocabulary and a built split -> tensors: change for other data here
    __init__.py  the params your params.json may hold, and the glue between the two

Building the data set from a corpus (Kaggle CSV or CoNLL files), building the
vocabulary, predicting from sentences and the per-type evaluation report are reused
from the built-in NER task below; copy them from torchstarter/tasks/ner/ into this
package when you need to change them.
"""

from __future__ import annotations

from typing import Any

from torchstarter.config import Field, Params
from torchstarter.tasks.ner import (
    add_build_arguments,
    add_vocab_arguments,
    build_dataset,
    build_vocab_command,
    demo_inputs,
    evaluation_report,
    format_predictions,
    predict,
    write_sample_data,
)

from .data import describe_data, load_split
from .net import METRICS, Tagger, loss_fn

# The keys of this task in params.json, besides the engine's (learning_rate, batch_size,
# num_epochs, ...). A misspelt key, a wrong type or an out-of-range value stops `train`
# with a message naming the key. Add a Field here for every new knob of your model.
SCHEMA = {
    "embedding_dim": Field(int, "Size of the word embeddings.", default=50, min=1),
    "lstm_hidden_dim": Field(int, "Hidden units of each LSTM direction.", default=50, min=1),
    "bidirectional": Field(bool, "Read sentences in both directions.", default=False),
    "dropout": Field(float, "Dropout on the embeddings and before the output layer.",
                     default=0.0, min=0, max=1),
}

# The validation metric that picks best.pt (a key of METRICS, or "loss").
DEFAULT_METRIC = "f1"


def build_model(params: Params, data_info: dict[str, Any]) -> Tagger:
    """The model for these params and this vocabulary (describe_data's result)."""
    model = Tagger(vocab_size=len(data_info["words"]), tags=data_info["tags"],
                   embedding_dim=params.embedding_dim, hidden_dim=params.lstm_hidden_dim,
                   bidirectional=params.bidirectional, dropout=params.dropout)
    model.data_info = data_info  # predict encodes new sentences with this vocabulary
    return model


__all__ = [
    "DEFAULT_METRIC", "METRICS", "SCHEMA", "add_build_arguments", "add_vocab_arguments",
    "build_dataset", "build_model", "build_vocab_command", "demo_inputs", "describe_data",
    "evaluation_report", "format_predictions", "load_split", "loss_fn", "predict",
    "write_sample_data",
]
