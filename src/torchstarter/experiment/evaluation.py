"""`evaluate` and `predict`: load a checkpoint with the params it was trained with."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.checkpoint import check_compatible, load_checkpoint
from torchstarter.engine.trainer import Trainer
from torchstarter.errors import UserError
from torchstarter.experiment import files
from torchstarter.experiment.training import load_splits, setup_torch
from torchstarter.tasks import Task
from torchstarter.tasks.registry import resolve_params
from torchstarter.utils.atomic import write_json


def load_trained(model_dir: Path, restore: str = "best",
                 overrides: Mapping[str, Any] | None = None) -> tuple[Task, Params, Trainer]:
    path = files.checkpoint_path(model_dir, restore)
    state = load_checkpoint(path)
    _check_same_task(model_dir, path, state["params"].get("task"))
    raw = {**state["params"], **(overrides or {})}
    if raw.get("device") == "cuda" and "device" not in (overrides or {}) and \
            not torch.cuda.is_available():
        raw["device"] = "cpu"  # trained on a GPU, used here on a CPU machine
    task, params = resolve_params(raw, f"{path} (params saved in the checkpoint)",
                                  base_dir=Path(model_dir))
    trainer = Trainer(task, params, setup_torch(params), state.get("data_info"))
    check_compatible(trainer.model, state["model"], path)
    trainer.load_state_dict(state, weights_only=True)
    trainer.epoch = state["epoch"]
    trainer.partial_epoch = state.get("partial_epoch")
    return task, params, trainer


def _check_same_task(model_dir: Path, path: Path, task: Any) -> None:
    """A checkpoint given by path must belong to this model dir's task."""
    try:
        own = json.loads((Path(model_dir) / files.PARAMS).read_text(encoding="utf-8-sig"))["task"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no readable params.json: the checkpoint's own params are all there is
    if own != task:
        raise UserError(f"{path}: a checkpoint of task '{task}', but "
                        f"{Path(model_dir) / files.PARAMS} is task '{own}'; give a checkpoint "
                        f"of this experiment's task")


def evaluate(model_dir: Path, data_dir: Path, split: str = "test", restore: str = "best",
             overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], Path]:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise UserError(f"--split {split!r}: a split name such as train, val or test (letters, "
                        f"digits, '_' and '-'), not a path")
    task, params, trainer = load_trained(model_dir, restore, overrides)
    data = load_splits(task, params, data_dir, (split,), trainer.data_info)[split]
    metrics: dict[str, Any] = {"epoch": trainer.epoch}
    partial = trainer.partial_epoch
    if partial is not None:  # weights from inside an interrupted epoch, not from its end
        metrics["partial_epoch"] = {"epoch": partial["epoch"], "step": partial["step"]}
    metrics.update({"examples": len(data), **trainer.evaluate(data)})
    if task.evaluation_report is not None:
        metrics.update(task.evaluation_report(trainer.model, params, data, trainer.device))
    out = Path(model_dir) / files.metrics_file(split, restore)
    write_json(out, metrics)
    return metrics, out


def predict(model_dir: Path, inputs: list[str], restore: str = "best"
            ) -> tuple[Task, list[dict[str, Any]]]:
    task, params, trainer = load_trained(model_dir, restore)
    if task.predict is None:
        raise UserError(f"task '{task.name}' has no predict(); add one to the task module")
    return task, task.predict(trainer.model, params, inputs, trainer.device)
