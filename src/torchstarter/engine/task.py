"""The task interface: all that a task gives the engine, and all the engine asks of it.

A task is a subclass of Task (what `torchstarter new` writes and the built-in tasks
are), or a plain module of functions in the tutorial's style, which
torchstarter.tasks.module_task adapts to this class in one place. The engine calls
nothing of a task that is not written in this file.

What passes between the hooks:
  params     the validated params.json (engine keys and the task's `schema`)
  data_info  describe_data's result, or None: saved in every checkpoint and passed to
             every hook that builds a model or reads data, so evaluate and predict
             rebuild exactly the model that was trained, whatever the data dir holds now
  a split    load_split's result: a BatchSource (below) or a torch Dataset of
             (inputs, label) pairs, which a DataLoader reads with num_workers processes
  a batch    (inputs, labels) of a split, on the training device
  outputs    whatever model(inputs) returns; only loss() and the metrics read it
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from torchstarter.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from torchstarter.config import Field, Params
    from torchstarter.engine.examples import Examples
    from torchstarter.engine.export_spec import ExportSpec

DataInfo = dict[str, Any]  # JSON-like facts about the data (a vocabulary, label names)


class Loss(NamedTuple):
    """A batch's mean loss and how many items it averages: its examples, or another unit
    (NER: real tokens), so that the epoch's loss is weighted by that unit."""

    value: torch.Tensor
    count: int | torch.Tensor


@dataclass(frozen=True)
class Metric:
    """fn(outputs, labels) -> (numerator, denominator) for one batch.

    The engine adds both up over the whole pass and divides once, so the value is exact
    whatever the batch sizes. `if_empty` is the value when the denominators add up to 0
    (NaN by default; 0.0 for precision with nothing predicted, as seqeval counts it).
    Never pad a batch's denominator to avoid 0/0: that would bias the sum.
    """

    fn: Callable[[Any, Any], tuple[Any, Any]]
    if_empty: float = math.nan

    def __call__(self, outputs: Any, labels: Any) -> tuple[Any, Any]:
        return self.fn(outputs, labels)


# ---- what a split may be -----------------------------------------------------------------

HOST_PREFIX = "host_"  # batch dict entries named host_* stay on the host (never moved)


@runtime_checkable
class BatchSource(Protocol):
    """In-memory split data: the engine forms a batch by indexing it, with no workers."""

    def __len__(self) -> int: ...

    def get_batch(self, index: torch.Tensor) -> tuple[Any, Any]:
        """The examples at `index` (a CPU LongTensor) as (inputs, labels)."""
        ...


# Methods a BatchSource may add; the engine uses each one it finds.
@runtime_checkable
class MovableData(Protocol):
    def to(self, device: torch.device) -> Any:
        """The split on `device` (moved once per run, so no step copies a batch)."""
        ...


@runtime_checkable
class GroupedData(Protocol):
    def batch_indices(self, order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
        """The pass's order cut into batches by the data's own rule (e.g. by length),
        every index exactly once."""
        ...


@runtime_checkable
class StagedData(Protocol):
    def iter_batches(self, groups: list[torch.Tensor]) -> Iterator[tuple[Any, Any]]:
        """One (inputs, labels) per group of indices, for a whole pass at once (to copy
        the pass's indices to the device in one transfer)."""
        ...


# ---- the task -----------------------------------------------------------------------------

class Task:
    """Subclass it, set the four attributes, write the three required methods.

    Optional hooks have a default that does nothing, or, for the ones a command cannot do
    without, refuses with one line naming the hook to write.
    """

    name: str = ""  # set by the registry to params.json's "task", which checkpoints keep
    schema: Mapping[str, Field] = {}  # the task's own params keys (engine keys are shared)
    metrics: Mapping[str, Metric] = {}  # computed on train and val every epoch
    default_metric: str = "loss"  # "loss" or a key of metrics: selects best.pt
    serves: str = ""  # "text" or "image": the input `serve`'s web page offers (both if "")

    # ---- required -------------------------------------------------------------------------
    def load_split(self, params: Params, data_dir: Path, split: str,
                   data_info: DataInfo | None) -> BatchSource | torch.utils.data.Dataset:
        """One split ("train", "val", "test") of a data folder made by build-dataset."""
        raise NotImplementedError(f"task '{self.name}' must define load_split")

    def build_model(self, params: Params, data_info: DataInfo | None) -> nn.Module:
        """The network for these params (called again by evaluate and predict)."""
        raise NotImplementedError(f"task '{self.name}' must define build_model")

    def loss(self, outputs: Any, labels: Any) -> Loss:
        """The batch's mean loss (differentiable) and the count it averages."""
        raise NotImplementedError(f"task '{self.name}' must define loss")

    # ---- optional: training ---------------------------------------------------------------
    def describe_data(self, params: Params, data_dir: Path) -> DataInfo | None:
        """Facts the model is built for (a vocabulary); None when it depends on params only."""
        return None

    def initialize_model(self, model: nn.Module, params: Params,
                         data_info: DataInfo | None) -> None:
        """Fill in pretrained weights (e.g. word vectors) and freeze what must not train.

        Called when training builds its model, right after build_model and before the
        model is placed on the device, wrapped (DDP broadcasts rank 0's weights) or seen by
        the optimizer and the weight average; never by evaluate or predict, whose weights
        come from the checkpoint, so they never need the files it reads. Check what it
        reads against data_info (a hash describe_data recorded), so a resumed run cannot
        mix two files.
        """

    def augment(self, params: Params, inputs: Any, generator: torch.Generator) -> Any:
        """Training batches only; draw randomness from `generator` so that runs repeat."""
        return inputs

    def training_loss(self, params: Params, train_data: Any, data_info: DataInfo | None
                      ) -> Callable[[Any, Any], Loss]:
        """The loss the train step differentiates; by default `loss` itself.

        Return another function of (outputs, labels) to shape training only (label
        smoothing, class weights counted on `train_data`). Its count must be what its
        value averages (examples, tokens, or their summed weights), so the epoch's train
        loss and gradient accumulation stay exact. Validation, `best` and evaluate keep
        `loss`, so their numbers compare across runs with and without these options.
        """
        return self.loss

    def configure_optimizer(self, params: Params, model: nn.Module
                            ) -> list[dict[str, Any]] | None:
        """Parameter groups for the optimizer (e.g. no weight decay on biases), or None
        for one group of every trainable parameter."""
        return None

    # ---- optional: after training ---------------------------------------------------------
    def evaluation_report(self, model: nn.Module, params: Params, data: Any,
                          device: torch.device, data_info: DataInfo | None
                          ) -> dict[str, Any]:
        """Results `evaluate` adds to its metrics file (e.g. scores per class)."""
        return {}

    def examples(self, model: nn.Module, params: Params, data: Any, device: torch.device,
                 data_info: DataInfo | None) -> Examples | None:
        """Per-example results of a split (engine/examples.py): `evaluate` writes them to
        a predictions file and bootstraps confidence intervals from their parts. None:
        the task has none, and evaluate gives its metrics without intervals."""
        return None

    def predict(self, model: nn.Module, params: Params, inputs: list[str],
                device: torch.device, data_info: DataInfo | None) -> list[dict[str, Any]]:
        """One row per input of `torchstarter predict` (files, sentences...)."""
        raise UserError(f"task '{self.name}' has no predict(); add one to the task module")

    def format_predictions(self, rows: list[dict[str, Any]]) -> str | None:
        """predict's rows for a person; None prints them as a table."""
        return None

    # ---- optional: shipping the model (the export and serve commands) --------------------
    def export_spec(self, model: nn.Module, params: Params, data_info: DataInfo | None
                    ) -> ExportSpec:
        """The trained model as a module of plain tensors, and how export checks it
        (engine/export_spec.py)."""
        raise UserError(f"task '{self.name}' has no export_spec(); add one to the task "
                        f"module (see torchstarter.engine.export_spec)")

    def serve_inputs(self, body: Any, uploads: list[tuple[str, bytes]],
                     limits: Mapping[str, int], data_info: DataInfo | None) -> list[Any]:
        """The inputs one HTTP request to `serve` brings: its parsed JSON body (None for a
        multipart upload) or its uploaded files as (file name, bytes). Raise UserError,
        naming the field at fault, for anything malformed or over `limits`
        (max_items per request, max_tokens per sentence): the client gets a 400."""
        raise UserError(f"task '{self.name}' has no serve_inputs(); add one to the task "
                        f"module to serve it")

    def predict_inputs(self, model: nn.Module, params: Params, inputs: list[Any],
                       device: torch.device, data_info: DataInfo | None
                       ) -> list[dict[str, Any]]:
        """predict's rows for inputs serve_inputs made, one per input in order (the server
        joins several requests' inputs into one call). Give predict and serve the same
        rows by ending predict in this hook."""
        raise UserError(f"task '{self.name}' has no predict_inputs(); add one to the task "
                        f"module to serve it")

    # ---- optional: data preparation (the build-dataset and build-vocab commands) ---------
    def add_build_arguments(self, parser: argparse._ActionsContainer) -> None:
        """The task's own flags of `torchstarter build-dataset`."""

    def build_dataset(self, args: argparse.Namespace) -> list[str]:
        """Raw data -> train/val/test folders; returns the lines to print."""
        raise UserError(f"task '{self.name}' has no build_dataset(); prepare its data "
                        f"yourself")

    def add_vocab_arguments(self, parser: argparse._ActionsContainer) -> None:
        """The task's own flags of `torchstarter build-vocab`."""

    def build_vocab(self, args: argparse.Namespace) -> list[str]:
        """A built data folder -> its vocabulary files; returns the lines to print."""
        raise UserError(f"task '{self.name}' has no vocabulary to build")

    def write_sample_data(self, folder: Path) -> dict[str, Any]:
        """Small raw data for the demo and the tests; returns what was written."""
        raise UserError(f"task '{self.name}' ships no sample data")

    def demo_inputs(self, data_dir: Path) -> list[str]:
        """A few inputs for predict in the demo."""
        return []

    # ---- not hooks: what the engine and the commands derive from the above ---------------
    def provides(self, hook: str) -> bool:
        """Whether the task writes `hook` itself rather than keeping the default."""
        return hook in getattr(self, "__dict__", ()) or \
            getattr(type(self), hook) is not getattr(Task, hook)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("loss", *self.metrics)

    def build_options(self, data_dir: Any, output_dir: Any, seed: int = 230,
                      overwrite: bool = False, **options: Any) -> argparse.Namespace:
        """The arguments build_dataset gets from the CLI, with the task's own defaults."""
        args = _defaults(self.add_build_arguments)
        args.__dict__.update(data_dir=Path(data_dir), output_dir=Path(output_dir), seed=seed,
                             overwrite=overwrite, **options)
        return args

    def vocab_options(self, data_dir: Any, **options: Any) -> argparse.Namespace:
        """The arguments build_vocab gets from the CLI, with the task's own defaults."""
        args = _defaults(self.add_vocab_arguments)
        args.__dict__.update(data_dir=Path(data_dir), **options)
        return args


def _defaults(add_arguments: Callable[[argparse.ArgumentParser], None]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([])
