"""The named-entity recognition task: a BIO tag for every token of a sentence.

TASK is the task the engine runs (a torchstarter.engine.task.Task); the module-level
names are its parts, for a project's own task to reuse. Data: the Kaggle GMB CSV or
CoNLL column files, split by `build-dataset`, vocabulary from `build-vocab`.
Metrics: token accuracy over real tokens, and entity-level micro precision, recall and
F1 in the CoNLL convention (seqeval's default mode); `best` is chosen by entity F1.

Options for rare and unknown words (issue 18), all off by default and free when off:
unk_replace (singleton words trained as UNK, data.replace_singletons), lowercase_words
and case_features (data.py), and class_weights (net.weighted_loss_fn, training only).

Pretrained word vectors (embeddings_file, freeze_embeddings, embeddings_extend_vocab):
describe_data records what the file covers in data_info; initialize_model copies the
vectors into the embedding when training builds its model (embeddings.py).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Field, Params
from torchstarter.engine.examples import Examples
from torchstarter.engine.export_spec import ExportSpec
from torchstarter.engine.losses import balanced_class_weights
from torchstarter.engine.task import DataInfo, Loss, Task
from torchstarter.errors import ParamsError, UserError
from torchstarter.tasks.ner import embeddings
from torchstarter.tasks.ner.build import (
    add_build_arguments,
    add_vocab_arguments,
    build_dataset,
    build_vocab_command,
)
from torchstarter.tasks.ner.data import (
    NUM_CASES,
    describe_data,
    load_split,
    log_embeddings,
    option,
    replace_singletons,
)
from torchstarter.tasks.ner.export import export_spec
from torchstarter.tasks.ner.net import (
    Tagger,
    entity_f1,
    entity_precision,
    entity_recall,
    loss_fn,
    token_accuracy,
    weighted_loss_fn,
)
from torchstarter.tasks.ner.predict import format_predictions, predict, predict_inputs, serve_inputs
from torchstarter.tasks.ner.report import evaluation_report, examples

log = logging.getLogger("torchstarter")

SCHEMA = {
    "embedding_dim": Field(int, "Size of the word embeddings (with embeddings_file: the "
                           "dimension of its vectors).", default=50, min=1),
    "lstm_hidden_dim": Field(int, "Hidden units of each LSTM direction.", default=50, min=1),
    "bidirectional": Field(bool, "Read sentences in both directions.", default=False),
    "num_layers": Field(int, "Stacked LSTM layers.", default=1, min=1),
    "dropout": Field(float, "Dropout on embeddings, between LSTM layers and before the "
                     "output layer.", default=0.0, min=0, max=1),
    "char_embedding_dim": Field(int, "Character embedding size for a per-word character "
                                "CNN; 0 turns character features off.", default=0, min=0),
    "char_filters": Field(int, "Filters of the character CNN (its output size).",
                          default=50, min=1),
    "crf": Field(bool, "CRF output layer with Viterbi decoding instead of per-token "
                 "argmax.", default=False),
    "bucket_by_length": Field(bool, "Batch sentences of similar length together (less "
                              "padding; order still a function of seed and epoch).",
                              default=False),
    "pad_to_multiple": Field(int, "Pad each batch to a multiple of this many tokens (16 "
                             "leaves a few fixed widths, the static shapes that compile and "
                             "CUDA graphs need); 1 pads to the batch's longest sentence.",
                             default=1, min=1),
    "class_weights": Field(str, "Weight each train token's loss by its gold tag: 'balanced' "
                           "gives tag c the weight n_tokens / (n_tags_seen * n_c) counted "
                           "on train, so rare entity types count more; training loss only, "
                           "not with crf.", default="none", choices=("none", "balanced")),
    "unk_replace": Field(float, "During training, replace each word seen once in train by "
                         "UNK with this probability, so the UNK vector learns what unknown "
                         "words look like; 0 turns it off.", default=0.0, min=0, max=1),
    "lowercase_words": Field(bool, "Look words up lowercased (a vocabulary built with case "
                             "is merged to lowercase); pair with case_features.",
                             default=False),
    "case_features": Field(bool, "Add a small embedding of each token's case shape (lower, "
                           "UPPER, Title, has a digit, other) to its word embedding.",
                           default=False),
    "embeddings_file": Field(str, "Pretrained word vectors to start the word embeddings "
                             "from: a text file of 'word v1 v2 ...' lines (GloVe; word2vec "
                             "or fastText text with their 'count dim' first line), UTF-8, "
                             "maybe .gz. A relative path is looked for from the current "
                             "folder, then from the data dir. Each vocabulary word takes the "
                             "vector of the same word, else of its lowercased form; words "
                             "without one keep their random start. Read by train only (its "
                             "sha256 and coverage go into data_info and every checkpoint): "
                             "evaluate and predict never need it. '' for none.", default=""),
    "freeze_embeddings": Field(bool, "Keep the word embeddings as they start (pretrained "
                               "vectors, or random without embeddings_file): not trained, "
                               "so neither the optimizer nor weight decay touches them.",
                               default=False),
    "embeddings_extend_vocab": Field(bool, "Add the words of embeddings_file that the train "
                                     "vocabulary lacks (lowercased when the vocabulary is), "
                                     "so val and test words found only in the vectors get "
                                     "their vector instead of UNK; a cased vocabulary then "
                                     "also looks a token up lowercased when it is not found "
                                     "as written. The embedding matrix, and every "
                                     "checkpoint, grow by those words.", default=False),
}
CASE_EMBEDDING_DIM = 4  # 5 shapes: a handful of dimensions is plenty
METRICS = {"accuracy": token_accuracy, "precision": entity_precision,
           "recall": entity_recall, "f1": entity_f1}
DEFAULT_METRIC = "f1"


def build_model(params: Params, data_info: DataInfo) -> Tagger:
    return Tagger(
        vocab_size=len(data_info["words"]), tags=data_info["tags"],
        embedding_dim=params.embedding_dim, hidden_dim=params.lstm_hidden_dim,
        bidirectional=params.bidirectional, num_layers=params.num_layers,
        dropout=params.dropout, num_chars=len(data_info["chars"]) + 2,
        char_embedding_dim=params.char_embedding_dim, char_filters=params.char_filters,
        crf=params.crf, num_cases=NUM_CASES,
        case_embedding_dim=CASE_EMBEDDING_DIM if option(params, "case_features") else 0)


def initialize_model(model: torch.nn.Module, params: Params, data_info: DataInfo) -> None:
    """Pretrained vectors into the word embedding, and freezing it, when params ask: run
    when training builds its model, before the optimizer and the weight average see it.

    Re-reads embeddings_file (which must be the file describe_data hashed); evaluate and
    predict never call it, since the checkpoint holds the trained rows.
    """
    name = option(params, "embeddings_file")
    frozen = bool(option(params, "freeze_embeddings"))
    embedding = getattr(model, "embedding", None)
    if (name or frozen) and not isinstance(embedding, torch.nn.Embedding):
        raise UserError(f"key 'embeddings_file'/'freeze_embeddings': the model "
                        f"({type(model).__name__}) has no nn.Embedding named 'embedding' "
                        f"to fill in or freeze; name its word embedding so, or override "
                        f"initialize_model")
    if name:
        described = (data_info or {}).get("embeddings")
        if not isinstance(described, dict):
            raise UserError(f"key 'embeddings_file' {name!r}: data_info has no 'embeddings' "
                            f"entry; the task's describe_data must be (or call) "
                            f"torchstarter.tasks.ner.describe_data")
        embeddings.initialize(embedding, data_info["words"], described, params.embedding_dim)
        log_embeddings(data_info, frozen)
    elif frozen:
        log.warning("freeze_embeddings is true without embeddings_file: the word embeddings "
                    "stay at their random start")
    if frozen:
        embedding.weight.requires_grad_(False)


def training_loss(params: Params, train_data: Any, data_info: DataInfo
                  ) -> Callable[[Any, torch.Tensor], Loss] | None:
    """With class_weights "balanced", the tag-weighted loss counted on train; else None
    (the task's own loss trains: a module that imports these parts keeps its loss_fn).

    A CRF scores whole sentences, so per-token weights have no place in its loss: refused.
    """
    if option(params, "class_weights") == "none":
        return None
    if params.get("crf", False):
        raise ParamsError("key 'class_weights': 'balanced' with crf true: a CRF's loss is per "
                        "sentence, not per token, so tag weights cannot apply; set "
                        "class_weights to 'none' or crf to false")
    tags = getattr(train_data, "tags", None)
    if not isinstance(tags, torch.Tensor):
        raise ParamsError(f"key 'class_weights': 'balanced' counts tags on the train split, but "
                        f"it is a {type(train_data).__name__} without a .tags tensor; set "
                        f"class_weights to 'none' or override training_loss in your task")
    return weighted_loss_fn(balanced_class_weights(tags, len(data_info["tags"])))


def augment(params: Params, inputs: Any, generator: torch.Generator) -> Any:
    """Training batches: singleton words to UNK at rate unk_replace (a no-op at 0)."""
    rate = option(params, "unk_replace")
    if rate > 0 and isinstance(inputs, dict) and "singletons" in inputs:
        return replace_singletons(inputs, rate, generator)
    return inputs


def demo_inputs(data_dir: Path) -> list[str]:
    return ["John Smith flew from London to Paris on Monday for a meeting of the "
            "United Nations .", "The French president met Chinese officials in Beijing ."]


# Said beside the demo's predictions: a tagger trained on the sample tags poorly.
SAMPLE_NOTE = ("the built-in NER sample has 82 sentences, far too few to learn from: these "
               "tags show that the pipeline runs, not what the tagger can do (on the Kaggle "
               "corpus the tuned experiment reaches test entity F1 0.849, see the README)")


def write_sample_data(folder: Path) -> dict[str, str]:
    """Copy the small Kaggle-format sample that ships with the package; "note" says what
    the sample cannot show."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = resources.files("torchstarter.tasks.ner") / "sample" / "ner_sample.csv"
    with resources.as_file(source) as path:
        shutil.copyfile(path, folder / "ner_dataset.csv")
    return {"file": str(folder / "ner_dataset.csv"), "note": SAMPLE_NOTE}


class NerTask(Task):
    schema = SCHEMA
    metrics = METRICS
    default_metric = DEFAULT_METRIC
    serves = "text"

    def describe_data(self, params: Params, data_dir: Path) -> DataInfo:
        return describe_data(params, data_dir)

    def load_split(self, params: Params, data_dir: Path, split: str,
                   data_info: DataInfo | None) -> Any:
        return load_split(params, data_dir, split, data_info)

    def build_model(self, params: Params, data_info: DataInfo | None) -> Tagger:
        return build_model(params, data_info)

    def initialize_model(self, model: torch.nn.Module, params: Params,
                         data_info: DataInfo | None) -> None:
        initialize_model(model, params, data_info)

    def loss(self, outputs: Any, labels: torch.Tensor) -> Loss:
        return loss_fn(outputs, labels)

    def augment(self, params: Params, inputs: Any, generator: torch.Generator) -> Any:
        return augment(params, inputs, generator)

    def training_loss(self, params: Params, train_data: Any, data_info: DataInfo | None
                      ) -> Callable[[Any, Any], Loss]:
        return training_loss(params, train_data, data_info) or self.loss

    def evaluation_report(self, model: torch.nn.Module, params: Params, data: Any,
                          device: torch.device, data_info: DataInfo | None
                          ) -> dict[str, Any]:
        return evaluation_report(model, params, data, device, data_info)

    def examples(self, model: torch.nn.Module, params: Params, data: Any,
                 device: torch.device, data_info: DataInfo | None) -> Examples:
        return examples(model, params, data, device, data_info)

    def predict(self, model: torch.nn.Module, params: Params, inputs: list[str],
                device: torch.device, data_info: DataInfo | None) -> list[dict[str, Any]]:
        return predict(model, params, inputs, device, data_info)

    def predict_inputs(self, model: torch.nn.Module, params: Params, inputs: list[Any],
                       device: torch.device, data_info: DataInfo | None
                       ) -> list[dict[str, Any]]:
        return predict_inputs(model, params, inputs, device, data_info)

    def serve_inputs(self, body: Any, uploads: list[tuple[str, bytes]],
                     limits: Mapping[str, int], data_info: DataInfo | None) -> list[Any]:
        if uploads:
            raise UserError("the NER model takes JSON, not uploaded files; send "
                            "{\"sentence\": \"...\"} with Content-Type application/json")
        return serve_inputs(body, limits)

    def export_spec(self, model: torch.nn.Module, params: Params,
                    data_info: DataInfo | None) -> ExportSpec:
        return export_spec(model, params, data_info)

    def format_predictions(self, rows: list[dict[str, Any]]) -> str:
        return format_predictions(rows)

    def add_build_arguments(self, parser: argparse._ActionsContainer) -> None:
        add_build_arguments(parser)

    def build_dataset(self, args: argparse.Namespace) -> list[str]:
        return build_dataset(args)

    def add_vocab_arguments(self, parser: argparse._ActionsContainer) -> None:
        add_vocab_arguments(parser)

    def build_vocab(self, args: argparse.Namespace) -> list[str]:
        return build_vocab_command(args)

    def write_sample_data(self, folder: Path) -> dict[str, Any]:
        return write_sample_data(folder)

    def demo_inputs(self, data_dir: Path) -> list[str]:
        return demo_inputs(data_dir)


TASK = NerTask()

# The parts, for `from ... import *` in a module-of-functions task; TASK stays out,
# or it would become that module's task instead of the module's own functions, and so
# does training_loss, whose "none" answer is the built-in loss_fn, not the module's own.
__all__ = [
    "DEFAULT_METRIC", "METRICS", "SCHEMA", "add_build_arguments",
    "add_vocab_arguments", "augment",
    "build_dataset", "build_model", "build_vocab_command", "demo_inputs", "describe_data",
    "evaluation_report", "examples", "format_predictions", "initialize_model",
    "load_split", "loss_fn",
    "predict",
    "training_loss", "write_sample_data",
]
