"""The general image-classification task: any layout, size and color mode, named classes.

build-dataset reads class folders (with or without train/val/test folders), a CSV of
path,label, or SIGNS file names (layouts.py); fits every image to a square of
--image-size, keeps given splits, and stores the class names and the train split's
normalisation in build_report.json. describe_data puts both in every checkpoint, so
evaluate and predict name classes and scale pixels as training did, whatever the data
folder holds later. The network is the SIGNS one behind that normalisation (net.py).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Field, Params
from torchstarter.engine.evaluation import classification_examples
from torchstarter.engine.examples import Examples
from torchstarter.engine.export_spec import ExportSpec
from torchstarter.engine.task import DataInfo, Loss, Metric, Task
from torchstarter.errors import UserError
from torchstarter.tasks.images.build import (
    MAX_SIZE,
    MIN_SIZE,
    REPORT,
    add_build_arguments,
    summary_lines,
)
from torchstarter.tasks.images.build import build_dataset as _build
from torchstarter.tasks.images.data import load_split
from torchstarter.tasks.images.net import Classifier
from torchstarter.tasks.images.predict import export_spec, predict, predict_inputs, serve_inputs
from torchstarter.tasks.images.sample_data import write_sample_data
from torchstarter.tasks.signs import SCHEMA as SIGNS_SCHEMA
from torchstarter.tasks.signs import augment, training_loss
from torchstarter.tasks.signs.net import accuracy, loss_fn
from torchstarter.tasks.vision.decode import FITS

# The SIGNS keys, less num_classes (the classes come from the data), with a lighter
# dropout default and a word on when flips hurt.
SCHEMA = {
    "num_channels": SIGNS_SCHEMA["num_channels"],
    "dropout_rate": Field(float, "Dropout before the last layer.", default=0.5, min=0, max=1),
    "augmentation": Field(bool, "Random horizontal flips of training batches; turn off for "
                          "pictures that mean something else mirrored (digits, text).",
                          default=True),
    "label_smoothing": SIGNS_SCHEMA["label_smoothing"],
    "class_weights": SIGNS_SCHEMA["class_weights"],
}
METRICS = {"accuracy": Metric(accuracy)}
DEFAULT_METRIC = "accuracy"


def describe_data(data_dir: Path) -> DataInfo:
    """Class names, image size, fit and train normalisation from build_report.json."""
    path = Path(data_dir) / REPORT
    hint = "--data-dir must be a folder made by torchstarter build-dataset --task images"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {hint}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{path}: cannot be read ({type(exc).__name__}); {hint}") from None
    try:
        info = {"classes": list(report["classes"]), "image_size": int(report["image_size"]),
                "fit": str(report["fit"]),
                "mean": [float(v) for v in report["normalisation"]["mean"]],
                "std": [float(v) for v in report["normalisation"]["std"]]}
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not a report of build-dataset --task images (classes, "
                        f"image_size, fit, normalisation); {hint}") from None
    if (len(info["classes"]) < 2 or not all(isinstance(c, str) for c in info["classes"])
            or len(set(info["classes"])) != len(info["classes"])
            or not MIN_SIZE <= info["image_size"] <= MAX_SIZE or info["fit"] not in FITS
            or len(info["mean"]) != 3 or len(info["std"]) != 3
            or not all(math.isfinite(v) for v in info["mean"] + info["std"])
            or not all(s > 0 for s in info["std"])):
        raise UserError(f"{path}: damaged (classes, image_size, fit, mean or std); rebuild "
                        f"the data with build-dataset --task images")
    return info


def build_model(params: Params, data_info: DataInfo) -> Classifier:
    return Classifier(data_info["mean"], data_info["std"], len(data_info["classes"]),
                      data_info["image_size"], params.num_channels, params.dropout_rate)


def demo_inputs(data_dir: Path) -> list[str]:
    """Three test images of different classes, as the user's own files would be given."""
    rows = (Path(data_dir) / "test.csv").read_text(encoding="utf-8").splitlines()[1:]
    return [str(Path(data_dir) / row.split(",", 1)[0]) for row in rows[::15][:3]]


class ImagesTask(Task):
    schema = SCHEMA
    metrics = METRICS
    default_metric = DEFAULT_METRIC
    serves = "image"

    def describe_data(self, params: Params, data_dir: Path) -> DataInfo:
        return describe_data(data_dir)

    def load_split(self, params: Params, data_dir: Path, split: str,
                   data_info: DataInfo | None) -> Any:
        return load_split(data_dir, split, data_info or describe_data(data_dir))

    def build_model(self, params: Params, data_info: DataInfo | None) -> Classifier:
        return build_model(params, data_info)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> Loss:
        return loss_fn(outputs, labels)

    def training_loss(self, params: Params, train_data: Any, data_info: DataInfo | None
                      ) -> Callable[[Any, Any], Loss]:
        classes = len(data_info["classes"]) if data_info else None
        return training_loss(params, train_data, num_classes=classes) or self.loss

    def augment(self, params: Params, inputs: torch.Tensor, generator: torch.Generator
                ) -> torch.Tensor:
        return augment(params, inputs, generator)

    def examples(self, model: torch.nn.Module, params: Params, data: Any,
                 device: torch.device, data_info: DataInfo | None) -> Examples:
        return classification_examples(model, data, params, device, data_info["classes"])

    def predict(self, model: torch.nn.Module, params: Params, inputs: list[str],
                device: torch.device, data_info: DataInfo | None) -> list[dict[str, Any]]:
        return predict(model, params, inputs, device, data_info)

    def predict_inputs(self, model: torch.nn.Module, params: Params, inputs: list[Any],
                       device: torch.device, data_info: DataInfo | None
                       ) -> list[dict[str, Any]]:
        return predict_inputs(model, params, inputs, device, data_info)

    def serve_inputs(self, body: Any, uploads: list[tuple[str, bytes]],
                     limits: Mapping[str, int], data_info: DataInfo | None) -> list[Any]:
        return serve_inputs(body, uploads, limits, data_info)

    def export_spec(self, model: torch.nn.Module, params: Params,
                    data_info: DataInfo | None) -> ExportSpec:
        return export_spec(model, params, data_info)

    def add_build_arguments(self, parser: argparse._ActionsContainer) -> None:
        add_build_arguments(parser)

    def build_dataset(self, args: argparse.Namespace) -> list[str]:
        return summary_lines(_build(args))

    def write_sample_data(self, folder: Path) -> dict[str, Any]:
        return write_sample_data(folder)

    def demo_inputs(self, data_dir: Path) -> list[str]:
        return demo_inputs(data_dir)


TASK = ImagesTask()

__all__ = ["DEFAULT_METRIC", "METRICS", "SCHEMA", "add_build_arguments", "build_model",
           "describe_data", "demo_inputs", "export_spec", "load_split", "loss_fn", "predict",
           "predict_inputs", "serve_inputs", "write_sample_data"]
