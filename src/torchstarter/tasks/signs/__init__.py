"""The SIGNS hand-sign task: images of a hand showing 0-5 fingers, 6 classes.

This module is the task interface (see torchstarter.tasks.base): params schema,
metrics, data, network, loss, augmentation, prediction and dataset building.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torchstarter.config import Field, Params
from torchstarter.tasks.signs.build import add_build_arguments, summary_lines
from torchstarter.tasks.signs.build import build_dataset as _build
from torchstarter.tasks.signs.data import augment, load_split
from torchstarter.tasks.signs.net import Net, accuracy, loss_fn
from torchstarter.tasks.signs.predict import predict
from torchstarter.tasks.signs.sample_data import write_sample_data

SCHEMA = {
    "num_channels": Field(int, "Channels of the first conv block (then x2, x4).", default=32,
                          min=1),
    "dropout_rate": Field(float, "Dropout before the last layer.", default=0.8, min=0, max=1),
    "num_classes": Field(int, "Number of labels (file names carry 0..num_classes-1).",
                         default=6, min=2),
    "augmentation": Field(bool, "Random horizontal flips of training batches.", default=True),
}
METRICS = {"accuracy": accuracy}
DEFAULT_METRIC = "accuracy"


def build_model(params: Params) -> Net:
    return Net(params.num_channels, params.dropout_rate, params.num_classes)


def demo_inputs(data_dir: Path) -> list[str]:
    """Three test images of different classes."""
    files = sorted((Path(data_dir) / "test_signs").iterdir())
    return [str(p) for p in files[::40][:3]]


def build_dataset(args: argparse.Namespace) -> list[str]:
    return summary_lines(_build(args))


__all__ = [
    "DEFAULT_METRIC", "METRICS", "SCHEMA", "add_build_arguments", "augment",
    "build_dataset", "build_model", "demo_inputs", "load_split", "loss_fn", "predict",
    "write_sample_data",
]
