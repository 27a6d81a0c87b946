"""The SIGNS hand-sign task: images of a hand showing 0-5 fingers, 6 classes.

TASK is the task the engine runs (a torchstarter.engine.task.Task). The module-level
names are its parts, for a project's own task to reuse: the schema, the metrics, the
data, the network and its loss, augmentation, prediction and dataset building.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Field, Params
from torchstarter.engine.evaluation import classification_examples
from torchstarter.engine.examples import Examples
from torchstarter.engine.export_spec import ExportSpec
from torchstarter.engine.losses import ClassificationLoss, balanced_class_weights
from torchstarter.engine.task import DataInfo, Loss, Metric, Task
from torchstarter.errors import ParamsError
from torchstarter.tasks.signs.build import add_build_arguments, summary_lines
from torchstarter.tasks.signs.build import build_dataset as _build
from torchstarter.tasks.signs.data import augment, load_split
from torchstarter.tasks.signs.net import Net, accuracy, loss_fn
from torchstarter.tasks.signs.predict import export_spec, predict, predict_inputs, serve_inputs
from torchstarter.tasks.signs.sample_data import write_sample_data

SCHEMA = {
    "num_channels": Field(int, "Channels of the first conv block (then x2, x4).", default=32,
                          min=1),
    "dropout_rate": Field(float, "Dropout before the last layer.", default=0.8, min=0, max=1),
    "num_classes": Field(int, "Number of labels (file names carry 0..num_classes-1).",
                         default=6, min=2),
    "augmentation": Field(bool, "Random horizontal flips of training batches.", default=True),
    "label_smoothing": Field(float, "Training targets mix this share of a uniform "
                             "distribution into the one-hot label (0: off); validation and "
                             "test losses stay plain cross-entropy.", default=0.0, min=0,
                             max=0.99),
    "class_weights": Field(str, "'balanced': weigh each training example by n / (classes * "
                           "n_class) of the train split, so rare classes count as much as "
                           "common ones; validation and test losses stay unweighted.",
                           default="none", choices=("none", "balanced")),
}
METRICS = {"accuracy": Metric(accuracy)}
DEFAULT_METRIC = "accuracy"


def build_model(params: Params) -> Net:
    return Net(params.num_channels, params.dropout_rate, params.num_classes)


def training_loss(params: Params, train_data: Any, data_info: DataInfo | None = None,
                  num_classes: int | None = None) -> Callable[[Any, Any], Loss] | None:
    """Cross-entropy with label smoothing or class weights (labels counted on
    `train_data`, over `num_classes`, by default params.num_classes) when either is asked
    for; else None: the task's own loss trains."""
    given = params.to_dict()  # a project's own schema may leave these keys out
    smoothing, weighting = given.get("label_smoothing", 0.0), given.get("class_weights")
    if smoothing == 0 and weighting in (None, "none"):
        return None
    weights = None
    if weighting == "balanced":
        labels = getattr(train_data, "labels", None)
        if not isinstance(labels, torch.Tensor):
            raise ParamsError(f"key 'class_weights': 'balanced' counts the labels of the train "
                            f"split, but it is a {type(train_data).__name__} without a "
                            f".labels tensor; set class_weights to 'none', or write the "
                            f"task's training_loss hook")
        weights = balanced_class_weights(labels, num_classes or params.num_classes)
    return ClassificationLoss(smoothing, weights)


def demo_inputs(data_dir: Path) -> list[str]:
    """Three test images of different classes."""
    files = sorted((Path(data_dir) / "test_signs").iterdir())
    return [str(p) for p in files[::40][:3]]


def build_dataset(args: argparse.Namespace) -> list[str]:
    return summary_lines(_build(args))


def examples(model: torch.nn.Module, params: Params, data: Any, device: torch.device
             ) -> Examples:
    """One row per image of the split (file, label, prediction, probabilities, loss)."""
    names = [str(label) for label in range(params.num_classes)]
    return classification_examples(model, data, params, device, names)


class SignsTask(Task):
    schema = SCHEMA
    metrics = METRICS
    default_metric = DEFAULT_METRIC
    serves = "image"

    def load_split(self, params: Params, data_dir: Path, split: str,
                   data_info: DataInfo | None) -> Any:
        return load_split(params, data_dir, split)

    def build_model(self, params: Params, data_info: DataInfo | None) -> Net:
        return build_model(params)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> Loss:
        return loss_fn(outputs, labels)

    def training_loss(self, params: Params, train_data: Any, data_info: DataInfo | None
                      ) -> Callable[[Any, Any], Loss]:
        return training_loss(params, train_data) or self.loss

    def augment(self, params: Params, inputs: torch.Tensor, generator: torch.Generator
                ) -> torch.Tensor:
        return augment(params, inputs, generator)

    def examples(self, model: torch.nn.Module, params: Params, data: Any,
                 device: torch.device, data_info: DataInfo | None) -> Examples:
        return examples(model, params, data, device)

    def predict(self, model: torch.nn.Module, params: Params, inputs: list[str],
                device: torch.device, data_info: DataInfo | None) -> list[dict[str, Any]]:
        return predict(model, params, inputs, device)

    def predict_inputs(self, model: torch.nn.Module, params: Params, inputs: list[Any],
                       device: torch.device, data_info: DataInfo | None
                       ) -> list[dict[str, Any]]:
        return predict_inputs(model, params, inputs, device)

    def serve_inputs(self, body: Any, uploads: list[tuple[str, bytes]],
                     limits: Mapping[str, int], data_info: DataInfo | None) -> list[Any]:
        return serve_inputs(body, uploads, limits)

    def export_spec(self, model: torch.nn.Module, params: Params,
                    data_info: DataInfo | None) -> ExportSpec:
        return export_spec(model, params)

    def add_build_arguments(self, parser: argparse._ActionsContainer) -> None:
        add_build_arguments(parser)

    def build_dataset(self, args: argparse.Namespace) -> list[str]:
        return build_dataset(args)

    def write_sample_data(self, folder: Path) -> dict[str, Any]:
        return write_sample_data(folder)

    def demo_inputs(self, data_dir: Path) -> list[str]:
        return demo_inputs(data_dir)


TASK = SignsTask()

# The parts, for `from ... import *` in a module-of-functions task; TASK stays out,
# or it would become that module's task instead of the module's own functions.
__all__ = [
    "DEFAULT_METRIC", "METRICS", "SCHEMA", "add_build_arguments",
    "augment", "build_dataset", "build_model", "demo_inputs", "examples", "load_split",
    "export_spec", "loss_fn", "predict", "predict_inputs", "serve_inputs", "training_loss",
    "write_sample_data",
]
