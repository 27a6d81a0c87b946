"""The Task interface: a class or a module of functions, and the one adapter between them."""

from __future__ import annotations

import math
import types

import pytest
import torch

from torchstarter.engine.task import Loss, Metric, Task
from torchstarter.errors import UserError
from torchstarter.tasks.registry import load_task, resolve_params, task_of_module


def module(**parts) -> types.ModuleType:
    """A module of functions with the required parts, and `parts` on top."""
    m = types.ModuleType("a_task")
    m.SCHEMA, m.METRICS, m.DEFAULT_METRIC = {}, {"acc": lambda o, y: (1, 1)}, "acc"
    m.load_split = lambda params, data_dir, split: "split"
    m.build_model = lambda params: torch.nn.Linear(2, 2)
    m.loss_fn = lambda outputs, labels: outputs.sum()
    for name, value in parts.items():
        setattr(m, name, value)
    return m


def test_data_info_is_given_to_a_function_that_requires_it_and_only_then():
    seen = {}

    def with_info(model, params, inputs, device, data_info):
        seen["with"] = data_info

    def optional_extra(model, params, inputs, device, batch_size=64):
        seen["extra"] = batch_size

    def wrapper(*args):
        seen["wrapper"] = len(args)

    def named(model, params, inputs, device, data_info=None):
        seen["named"] = data_info

    for fn in (with_info, optional_extra, wrapper, named):
        task = task_of_module("t", module(predict=fn))
        task.predict("m", "p", ["x"], "cpu", {"words": []})
    assert seen == {"with": {"words": []}, "extra": 64, "wrapper": 4,
                    "named": {"words": []}}


def test_the_tutorials_build_model_params_alone_still_works():
    task = task_of_module("t", module())
    assert isinstance(task.build_model("p", None), torch.nn.Linear)
    assert task.load_split("p", "d", "train", None) == "split"


def test_a_hook_that_needs_more_arguments_refuses_only_when_called():
    def predict(model, params, inputs, device, data_info, extra):
        return []

    task = task_of_module("t", module(predict=predict))  # loading (and training) still work
    with pytest.raises(UserError, match="predict requires 6 arguments"):
        task.predict("m", "p", [], "cpu", None)


def test_loss_fn_alone_or_with_a_count_becomes_a_loss():
    outputs, labels = torch.ones(3, 2), torch.zeros(3)
    plain = task_of_module("t", module()).loss(outputs, labels)
    assert isinstance(plain, Loss) and plain.count == 3 and float(plain.value) == 6
    counted = task_of_module("t", module(loss_fn=lambda o, y: (o.sum(), 7))).loss(outputs,
                                                                                  labels)
    assert counted == Loss(counted.value, 7)


def test_plain_metric_functions_become_metrics_and_keep_an_old_if_empty_mark():
    def precision(outputs, labels):
        return 0, 0

    precision.if_empty = 0.0
    task = task_of_module("t", module(METRICS={"p": precision, "q": lambda o, y: (0, 0)},
                                      DEFAULT_METRIC="p"))
    assert task.metrics["p"].if_empty == 0.0 and math.isnan(task.metrics["q"].if_empty)


def test_a_module_constant_named_task_is_not_mistaken_for_the_task():
    task = task_of_module("t", module(TASK="ner"))
    assert task.provides("load_split") and not task.provides("predict")


def test_task_given_as_a_class_is_refused_with_the_fix():
    class Mine(Task):
        pass

    with pytest.raises(UserError, match=r"TASK = Mine\(\)"):
        task_of_module("t", module(TASK=Mine))


def test_a_subclass_missing_a_required_method_names_it():
    class Half(Task):
        def load_split(self, params, data_dir, split, data_info):
            return None

    with pytest.raises(UserError, match="Half lacks build_model, loss"):
        task_of_module("t", types.SimpleNamespace(TASK=Half(), __name__="m"))


def test_a_star_import_of_a_builtin_task_is_a_module_of_its_functions():
    m = types.ModuleType("star")
    exec("from torchstarter.tasks.signs import *\nSCHEMA = {**SCHEMA}\n", m.__dict__)
    task = task_of_module("star", m)
    assert type(task).__name__ == "ModuleTask" and task.provides("predict")


def test_the_builtin_tasks_are_task_objects_named_by_params():
    for name in ("signs", "ner"):
        task = load_task(name)
        assert isinstance(task, Task) and task.name == name
        assert all(isinstance(m, Metric) for m in task.metrics.values())
    assert load_task("signs").name == "signs"  # the module's own object is not renamed
    import torchstarter.tasks.signs as signs

    assert signs.TASK.name == ""


def test_a_module_task_and_its_class_form_train_the_same_weights(tmp_path):
    """The two forms of one task, given the same seed, step to identical weights."""
    from torchstarter.engine.batching import TensorData
    from torchstarter.engine.build import build_trainer
    from torchstarter.engine.rng import seed_everything

    def load_split(params, data_dir, split):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        return TensorData(torch.randn(40, 3, generator=g), torch.randint(0, 2, (40,),
                                                                          generator=g))

    def build_model(params):
        return torch.nn.Linear(3, 2)

    def loss_fn(logits, labels):
        return torch.nn.functional.cross_entropy(logits, labels)

    def accuracy(logits, labels):
        return (logits.argmax(1) == labels).sum(), labels.numel()

    funcs = module(METRICS={"accuracy": accuracy}, DEFAULT_METRIC="accuracy",
                   load_split=load_split, build_model=build_model, loss_fn=loss_fn)

    class AsClass(Task):
        metrics = {"accuracy": Metric(accuracy)}
        default_metric = "accuracy"

        def load_split(self, params, data_dir, split, data_info):
            return load_split(params, data_dir, split)

        def build_model(self, params, data_info):
            return build_model(params)

        def loss(self, outputs, labels):
            return Loss(loss_fn(outputs, labels), labels.shape[0])

    results = []
    for task in (task_of_module("f", funcs), task_of_module("c", types.SimpleNamespace(
            TASK=AsClass(), __name__="c"))):
        raw = {"task": "signs", "learning_rate": 0.1, "batch_size": 8, "num_epochs": 2,
               "num_threads": 1}  # a count that follows the load changes float sums
        _, params = resolve_params(raw, "test")
        params = params.replace(metric="accuracy", metric_mode="max")
        seed_everything(params.seed)
        trainer = build_trainer(task, params, torch.device("cpu"))
        history = trainer.fit(task.load_split(params, tmp_path, "train", None),
                              task.load_split(params, tmp_path, "val", None))
        results.append((trainer.model.state_dict(), [r.val for r in history]))
    (a, hist_a), (b, hist_b) = results
    assert all(torch.equal(a[k], b[k]) for k in a) and hist_a == hist_b
