"""The task interface: the only things a project writes to use the engine.

A task is a Python module with these names at module level:

Required
  SCHEMA: dict[str, Field]       the task's own params keys (engine keys are shared)
  METRICS: dict[str, fn]         fn(outputs, labels) -> (numerator, denominator) for one
                                 batch; the epoch value is sum(numerators) / sum(denominators)
  DEFAULT_METRIC: str            the metric that selects `best` unless params say otherwise
  load_split(params, data_dir, split) -> data
                                 a TensorData (or any object with __len__ and
                                 get_batch(index), index being a CPU LongTensor), or a
                                 torch Dataset of (inputs, label)
  build_model(params) -> nn.Module
  loss_fn(outputs, labels) -> loss, or (loss, count) when the mean is over `count`
                                 items other than the batch's examples (e.g. real tokens)
Optional
  describe_data(params, data_dir) -> dict   facts about the data the model needs (e.g. a
                                 vocabulary), JSON-like. It is saved in every checkpoint and
                                 then passed as a last argument to build_model and
                                 load_split, so evaluate and predict rebuild exactly the
                                 model that was trained, whatever the data dir holds now
  augment(params, inputs, generator) -> inputs   applied to training batches only
  predict(model, params, inputs, device) -> list of row dicts, for `torchstarter predict`
  format_predictions(rows) -> str   the human-readable form of those rows (default: a table)
  evaluation_report(model, params, data, device) -> dict   extra results that `evaluate`
                                 adds to its metrics file (e.g. scores per class)
  add_build_arguments(parser) / build_dataset(args)   for `torchstarter build-dataset`
  add_vocab_arguments(parser) / build_vocab_command(args)   for `torchstarter build-vocab`
  write_sample_data(folder)      writes small raw data for the demo and tests
  demo_inputs(data_dir) -> list[str]   a few inputs for predict in the demo
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from torchstarter.config import Field
from torchstarter.errors import UserError

REQUIRED_PARTS = ("SCHEMA", "METRICS", "DEFAULT_METRIC", "load_split", "build_model", "loss_fn")
# What each required part is, for the error that names a missing one.
PART_SHAPES = {
    "SCHEMA": "a dict of params key -> torchstarter.config.Field",
    "METRICS": "a dict of name -> fn(outputs, labels) -> (numerator, denominator)",
    "DEFAULT_METRIC": "the name of the metric that selects best, e.g. 'accuracy'",
    "load_split": "def load_split(params, data_dir, split)",
    "build_model": "def build_model(params)",
    "loss_fn": "def loss_fn(outputs, labels)",
}
OPTIONAL_PARTS = ("describe_data", "augment", "predict", "format_predictions",
                  "evaluation_report", "add_build_arguments", "build_dataset",
                  "add_vocab_arguments", "build_vocab_command", "demo_inputs",
                  "write_sample_data")


@dataclass(frozen=True)
class Task:
    name: str
    schema: dict[str, Field]
    metrics: dict[str, Callable[[Any, Any], tuple[Any, Any]]]
    default_metric: str
    load_split: Callable[..., Any]
    build_model: Callable[..., Any]
    loss_fn: Callable[[Any, Any], Any]
    describe_data: Callable[..., Any] | None = None
    augment: Callable[..., Any] | None = None
    predict: Callable[..., Any] | None = None
    format_predictions: Callable[..., Any] | None = None
    evaluation_report: Callable[..., Any] | None = None
    add_build_arguments: Callable[..., Any] | None = None
    build_dataset: Callable[..., Any] | None = None
    add_vocab_arguments: Callable[..., Any] | None = None
    build_vocab_command: Callable[..., Any] | None = None
    write_sample_data: Callable[..., Any] | None = None
    demo_inputs: Callable[..., Any] | None = None

    @classmethod
    def from_module(cls, name: str, module: ModuleType) -> Task:
        where = f"task '{name}' ({getattr(module, '__file__', None) or module.__name__})"
        missing = [part for part in REQUIRED_PARTS if not hasattr(module, part)]
        if missing:
            shapes = "; ".join(f"{part}: {PART_SHAPES[part]}" for part in missing)
            raise UserError(f"{where} lacks {', '.join(missing)} ({shapes}); see "
                            f"torchstarter.tasks.base for what a task module must define")
        parts = {p: getattr(module, p) for p in REQUIRED_PARTS + OPTIONAL_PARTS
                 if hasattr(module, p)}
        _check_part_types(where, parts)
        task = cls(
            name=name,
            schema=dict(parts.pop("SCHEMA")),
            metrics=dict(parts.pop("METRICS")),
            default_metric=parts.pop("DEFAULT_METRIC"),
            **{k.lower(): v for k, v in parts.items()},
        )
        if task.default_metric not in task.metric_names:
            raise UserError(f"task '{name}': DEFAULT_METRIC '{task.default_metric}' is not "
                            f"'loss' or a key of METRICS ({', '.join(task.metrics)})")
        return task

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("loss", *self.metrics)

    def make_model(self, params: Any, data_info: dict[str, Any] | None) -> Any:
        if self.describe_data is None:
            return self.build_model(params)
        return self.build_model(params, data_info)

    def read_split(self, params: Any, data_dir: Path, split: str,
                   data_info: dict[str, Any] | None) -> Any:
        if self.describe_data is None:
            return self.load_split(params, data_dir, split)
        return self.load_split(params, data_dir, split, data_info)

    def build_options(self, data_dir: Any, output_dir: Any, seed: int = 230,
                      overwrite: bool = False, **options: Any) -> argparse.Namespace:
        """The arguments build_dataset gets from the CLI, with the task's own defaults."""
        parser = argparse.ArgumentParser()
        if self.add_build_arguments is not None:
            self.add_build_arguments(parser)
        args = parser.parse_args([])
        args.__dict__.update(data_dir=Path(data_dir), output_dir=Path(output_dir), seed=seed,
                             overwrite=overwrite, **options)
        return args

    def vocab_options(self, data_dir: Any, **options: Any) -> argparse.Namespace:
        """The arguments build_vocab_command gets from the CLI, with the task's defaults."""
        parser = argparse.ArgumentParser()
        if self.add_vocab_arguments is not None:
            self.add_vocab_arguments(parser)
        args = parser.parse_args([])
        args.__dict__.update(data_dir=Path(data_dir), **options)
        return args

    def loss(self, outputs: Any, labels: Any) -> tuple[Any, Any]:
        """Return (mean loss, number of items it averages); examples unless the task says."""
        result = self.loss_fn(outputs, labels)
        if isinstance(result, tuple):
            return result
        return result, (labels.shape[0] if hasattr(labels, "shape") else len(labels))


def _check_part_types(where: str, parts: dict[str, Any]) -> None:
    """Refuse parts of the wrong kind now, with their name, not as a crash mid-training."""
    schema, metrics = parts["SCHEMA"], parts["METRICS"]
    if not isinstance(schema, dict) or not all(isinstance(f, Field) for f in schema.values()):
        raise UserError(f"{where}: SCHEMA must be {PART_SHAPES['SCHEMA']}")
    if not isinstance(metrics, dict) or not all(callable(f) for f in metrics.values()):
        raise UserError(f"{where}: METRICS must be {PART_SHAPES['METRICS']}")
    if not isinstance(parts["DEFAULT_METRIC"], str):
        raise UserError(f"{where}: DEFAULT_METRIC must be {PART_SHAPES['DEFAULT_METRIC']}")
    for part, value in parts.items():
        if part[0].islower() and not callable(value):
            raise UserError(f"{where}: {part} must be a function, not "
                            f"{type(value).__name__}")
