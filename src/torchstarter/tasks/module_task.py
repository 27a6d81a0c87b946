"""A plain module of functions, in the tutorial's style, seen as an engine Task.

The module defines, at module level:
  SCHEMA, METRICS, DEFAULT_METRIC           the attributes schema, metrics, default_metric
  SERVES                                    optional: the attribute serves ("text", "image")
  load_split, build_model, loss_fn          required (loss_fn is Task.loss)
  describe_data, initialize_model, augment, training_loss, configure_optimizer,
  evaluation_report, examples, predict, format_predictions, predict_inputs,
  serve_inputs, export_spec, add_build_arguments, build_dataset, add_vocab_arguments,
  build_vocab_command (Task.build_vocab), write_sample_data, demo_inputs   optional
with the signatures of torchstarter.engine.task.Task, less `self`. This adapter is the
one place where a module's looser forms are accepted:
  - a hook may leave out its last argument, data_info (a task without describe_data
    has no use for it), as the tutorial's build_model(params) does;
  - loss_fn may return the mean loss alone (it then averages the batch's examples) or
    (loss, count);
  - a METRICS value may be a plain function (NaN when empty) or a Metric;
  - training_loss may return None: nothing to shape, the module's loss_fn trains.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from torchstarter.config import Field
from torchstarter.engine.task import Loss, Metric, Task
from torchstarter.errors import UserError

# Module name -> Task hook, for the names that differ.
RENAMED = {"loss_fn": "loss", "build_vocab_command": "build_vocab"}
REQUIRED = ("SCHEMA", "METRICS", "DEFAULT_METRIC", "load_split", "build_model", "loss_fn")
SHAPES = {  # what each required part is, for the error that names a missing one
    "SCHEMA": "a dict of params key -> torchstarter.config.Field",
    "METRICS": "a dict of name -> fn(outputs, labels) -> (numerator, denominator)",
    "DEFAULT_METRIC": "the name of the metric that selects best, e.g. 'accuracy'",
    "load_split": "def load_split(params, data_dir, split, data_info)",
    "build_model": "def build_model(params, data_info)",
    "loss_fn": "def loss_fn(outputs, labels)",
}
# Hook -> its arguments before data_info, for hooks whose last argument is data_info.
TAKES_DATA_INFO = {"load_split": 3, "build_model": 1, "evaluation_report": 4, "predict": 4,
                   "training_loss": 2, "examples": 4, "initialize_model": 2,
                   "predict_inputs": 4, "serve_inputs": 3, "export_spec": 2}
OPTIONAL = ("describe_data", "initialize_model", "augment", "training_loss", "configure_optimizer",
            "evaluation_report", "examples", "predict", "format_predictions",
            "predict_inputs", "serve_inputs", "export_spec",
            "add_build_arguments",
            "build_dataset",
            "add_vocab_arguments", "build_vocab_command", "write_sample_data", "demo_inputs")


class ModuleTask(Task):
    """Each hook the module defines replaces Task's default; the others keep it."""

    def __init__(self, name: str, module: ModuleType):
        self.name = name
        self.module = module
        where = f"task '{name}' ({getattr(module, '__file__', None) or module.__name__})"
        missing = [part for part in REQUIRED if not hasattr(module, part)]
        if missing:
            shapes = "; ".join(f"{part}: {SHAPES[part]}" for part in missing)
            raise UserError(f"{where} lacks {', '.join(missing)} ({shapes}); see "
                            f"torchstarter.engine.task for what a task defines")
        self.schema, self.default_metric = module.SCHEMA, module.DEFAULT_METRIC
        self.serves = getattr(module, "SERVES", "")
        self.metrics = as_metrics(module.METRICS)
        self._hooks: dict[str, Callable[..., Any]] = {}
        for part in (*REQUIRED[3:], *OPTIONAL):
            fn = getattr(module, part, None)
            if fn is None:
                continue
            if not callable(fn):
                raise UserError(f"{where}: {part} must be a function, not "
                                f"{type(fn).__name__}")
            hook = RENAMED.get(part, part)
            self._hooks[hook] = fn if hook not in TAKES_DATA_INFO else \
                _passing_data_info(where, part, fn, hasattr(module, "describe_data"))
        self._own = frozenset(self._hooks)
        for part in OPTIONAL:  # the rest keep Task's default, bound once (augment runs per step)
            hook = RENAMED.get(part, part)
            self._hooks.setdefault(hook, getattr(Task, hook).__get__(self))

    def provides(self, hook: str) -> bool:
        return hook in self._own

    def _call(self, hook: str, *args: Any) -> Any:
        return self._hooks[hook](*args)

    # The required hooks and every optional one, each to the module's function.
    def load_split(self, params, data_dir, split, data_info):  # type: ignore[no-untyped-def]
        return self._hooks["load_split"](params, data_dir, split, data_info)

    def build_model(self, params, data_info):  # type: ignore[no-untyped-def]
        return self._hooks["build_model"](params, data_info)

    def loss(self, outputs: Any, labels: Any) -> Loss:
        return _as_loss(self._hooks["loss"](outputs, labels), labels)

    def training_loss(self, params, train_data, data_info):  # type: ignore[no-untyped-def]
        if "training_loss" not in self._own:
            return self.loss
        fn = self._hooks["training_loss"](params, train_data, data_info)
        if fn is None:  # nothing to shape: the module's own loss trains
            return self.loss
        return lambda outputs, labels: _as_loss(fn(outputs, labels), labels)

    def describe_data(self, params, data_dir):  # type: ignore[no-untyped-def]
        return self._call("describe_data", params, data_dir)

    def initialize_model(self, model, params, data_info):  # type: ignore[no-untyped-def]
        return self._call("initialize_model", model, params, data_info)

    def augment(self, params, inputs, generator):  # type: ignore[no-untyped-def]
        return self._call("augment", params, inputs, generator)

    def configure_optimizer(self, params, model):  # type: ignore[no-untyped-def]
        return self._call("configure_optimizer", params, model)

    def evaluation_report(self, model, params, data, device, data_info):  # type: ignore[no-untyped-def]
        return self._call("evaluation_report", model, params, data, device, data_info)

    def examples(self, model, params, data, device, data_info):  # type: ignore[no-untyped-def]
        return self._call("examples", model, params, data, device, data_info)

    def predict(self, model, params, inputs, device, data_info):  # type: ignore[no-untyped-def]
        return self._call("predict", model, params, inputs, device, data_info)

    def predict_inputs(self, model, params, inputs, device, data_info):  # type: ignore[no-untyped-def]
        return self._call("predict_inputs", model, params, inputs, device, data_info)

    def serve_inputs(self, body, uploads, limits, data_info):  # type: ignore[no-untyped-def]
        return self._call("serve_inputs", body, uploads, limits, data_info)

    def export_spec(self, model, params, data_info):  # type: ignore[no-untyped-def]
        return self._call("export_spec", model, params, data_info)

    def format_predictions(self, rows):  # type: ignore[no-untyped-def]
        return self._call("format_predictions", rows)

    def add_build_arguments(self, parser):  # type: ignore[no-untyped-def]
        return self._call("add_build_arguments", parser)

    def build_dataset(self, args):  # type: ignore[no-untyped-def]
        return self._call("build_dataset", args)

    def add_vocab_arguments(self, parser):  # type: ignore[no-untyped-def]
        return self._call("add_vocab_arguments", parser)

    def build_vocab(self, args):  # type: ignore[no-untyped-def]
        return self._call("build_vocab", args)

    def write_sample_data(self, folder):  # type: ignore[no-untyped-def]
        return self._call("write_sample_data", folder)

    def demo_inputs(self, data_dir):  # type: ignore[no-untyped-def]
        return self._call("demo_inputs", data_dir)


def _passing_data_info(where: str, part: str, fn: Callable[..., Any], has_describe: bool
                       ) -> Callable[..., Any]:
    """fn itself when it takes data_info; else fn called without its last argument.

    It takes data_info when it requires that many arguments, or names the one after the
    others `data_info`: an optional extra argument (`batch_size=64`) or a `*args`
    wrapper gets none. A function with no signature to read gets it only when the
    module has describe_data, as the tutorial's modules did.
    """
    before = TAKES_DATA_INFO[RENAMED.get(part, part)]
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin or C function
        return fn if has_describe else _without_last(fn)
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY,
                                                       p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > before + 1:
        return _refusing(f"{where}: {part} requires {len(required)} arguments; the engine "
                         f"gives {before} and data_info ({SHAPES.get(part, part)})")
    named = len(positional) > before and positional[before].name == "data_info"
    return fn if len(required) == before + 1 or named else _without_last(fn)


def _without_last(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *args: fn(*args[:-1])


def _refusing(message: str) -> Callable[..., Any]:
    """Refuse when called: a hook training never calls must not stop training."""
    def refuse(*args: Any) -> Any:
        raise UserError(message)
    return refuse


def as_metrics(metrics: Any) -> Any:
    """Plain metric functions as Metric objects (NaN when empty, or the function's own
    `if_empty` attribute, which is how metrics were once marked); anything else as it is,
    for check_task to refuse."""
    if not isinstance(metrics, Mapping) or not all(callable(f) for f in metrics.values()):
        return metrics
    return {k: f if isinstance(f, Metric) else Metric(f, getattr(f, "if_empty", math.nan))
            for k, f in metrics.items()}


def check_task(task: Task, where: str) -> None:
    """Refuse a task whose parts are of the wrong kind now, not as a crash mid-training."""
    schema, metrics = task.schema, task.metrics
    if not isinstance(schema, Mapping) or not all(isinstance(f, Field)
                                                  for f in schema.values()):
        raise UserError(f"{where}: SCHEMA must be {SHAPES['SCHEMA']}")
    if not isinstance(metrics, Mapping) or not all(isinstance(f, Metric)
                                                   for f in metrics.values()):
        raise UserError(f"{where}: METRICS must be {SHAPES['METRICS']}")
    if not isinstance(task.default_metric, str):
        raise UserError(f"{where}: DEFAULT_METRIC must be {SHAPES['DEFAULT_METRIC']}")
    if task.default_metric not in task.metric_names:
        raise UserError(f"task '{task.name}': DEFAULT_METRIC '{task.default_metric}' is not "
                        f"'loss' or a key of METRICS ({', '.join(task.metrics)})")


def _as_loss(result: Any, labels: Any) -> Loss:
    """A module's loss in either form: the mean alone (over the batch's examples), or
    (mean, count)."""
    if isinstance(result, tuple):
        return Loss(*result)
    return Loss(result, labels.shape[0] if hasattr(labels, "shape") else len(labels))
