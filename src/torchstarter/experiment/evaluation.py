"""`evaluate` and `predict`: load a checkpoint with the params it was trained with.

Only the model is rebuilt (no optimizer, no trainer): evaluation is engine.evaluation's
function of (model, data, task).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine import evaluation
from torchstarter.engine.checkpoint import check_compatible, load_checkpoint
from torchstarter.engine.forward import place_model
from torchstarter.engine.task import DataInfo, Task
from torchstarter.errors import UserError
from torchstarter.experiment import files
from torchstarter.experiment.analysis import analyse
from torchstarter.experiment.predictions import intervals, write_predictions
from torchstarter.experiment.training import load_splits, setup_torch
from torchstarter.tasks.registry import resolve_params
from torchstarter.utils.atomic import write_json


@dataclass
class Trained:
    """A checkpoint's weights in their model, with what they were trained on."""

    task: Task
    params: Params
    model: torch.nn.Module
    device: torch.device
    data_info: DataInfo | None
    epoch: int
    partial_epoch: dict[str, Any] | None  # set when saved inside an interrupted epoch


def load_trained(model_dir: Path, restore: str = "best",
                 overrides: Mapping[str, Any] | None = None) -> Trained:
    path = files.checkpoint_path(model_dir, restore)
    state = load_checkpoint(path)
    _check_same_task(model_dir, path, state["params"].get("task"))
    raw = {**state["params"], **(overrides or {})}
    if raw.get("device") == "cuda" and "device" not in (overrides or {}) and \
            not torch.cuda.is_available():
        raw["device"] = "cpu"  # trained on a GPU, used here on a CPU machine
    task, params = resolve_params(raw, f"{path} (params saved in the checkpoint)",
                                  base_dir=Path(model_dir))
    device = setup_torch(params)
    data_info = state.get("data_info")
    try:
        built = task.build_model(params, data_info)
    except (TypeError, KeyError, AttributeError, ValueError, IndexError) as exc:
        raise UserError(f"{path}: a damaged checkpoint: its data description does not build "
                        f"a model ({type(exc).__name__}); restore from another file") from None
    model = place_model(built, params, device)
    check_compatible(model, state["model"], path)
    model.load_state_dict(state["model"])
    return Trained(task, params, model, device, data_info, state["epoch"],
                   state.get("partial_epoch"))


def _check_same_task(model_dir: Path, path: Path, task: Any) -> None:
    """A checkpoint given by path must belong to this model dir's task."""
    try:
        own = json.loads((Path(model_dir) / files.PARAMS).read_text(encoding="utf-8-sig"))["task"]
    except (OSError, ValueError, RecursionError, KeyError, TypeError):
        return  # no readable params.json: the checkpoint's own params are all there is
    if own != task:
        raise UserError(f"{path}: a checkpoint of task '{task}', but "
                        f"{Path(model_dir) / files.PARAMS} is task '{own}'; give a checkpoint "
                        f"of this experiment's task")


def check_split_name(split: str) -> None:
    """A --split names a split folder, never a path (evaluate and export both read it)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise UserError(f"--split {split!r}: a split name such as train, val or test (letters, "
                        f"digits, '_' and '-'), not a path")


def evaluate(model_dir: Path, data_dir: Path, split: str = "test", restore: str = "best",
             overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], Path]:
    check_split_name(split)
    trained = load_trained(model_dir, restore, overrides)
    task, params, model, device = trained.task, trained.params, trained.model, trained.device
    data = load_splits(task, params, data_dir, (split,), trained.data_info)[split]
    metrics: dict[str, Any] = {"epoch": trained.epoch}
    partial = trained.partial_epoch
    if partial is not None:  # weights from inside an interrupted epoch, not from its end
        metrics["partial_epoch"] = {"epoch": partial["epoch"], "step": partial["step"]}
    metrics.update({"examples": len(data),
                    **evaluation.evaluate(model, data, task, params, device)})
    metrics.update(task.evaluation_report(model, params, data, device, trained.data_info))
    own = files.own_checkpoint(model_dir, restore)
    path = files.checkpoint_path(model_dir, restore)
    digest = file_sha256(path)
    examples = task.examples(model, params, data, device, trained.data_info)
    if examples is not None:  # 95% intervals, and every example's result in a file
        metrics["intervals"] = intervals(examples, params.seed)
        predictions = Path(model_dir) / files.predictions_file(split, own or restore, digest)
        write_predictions(predictions, examples, {"task": task.name, "split": split,
                                                  "weights_sha256": digest})
        metrics["predictions_file"] = predictions.name
        stem = predictions.stem.removeprefix("predictions_")
        try:
            metrics["analysis"] = analyse(examples, data, Path(model_dir), stem)
        except OSError:
            raise  # a full disk or a read-only folder: the user's to fix, said in one line
        except Exception as exc:  # noqa: BLE001 - the metrics matter more than any picture
            metrics["analysis"] = {"error": f"{type(exc).__name__}: {exc}"}
    metrics["weights"] = {"file": str(path.resolve()), "sha256": digest,
                          "own": own is not None}
    out = Path(model_dir) / files.metrics_file(split, own or restore, digest)
    write_json(out, metrics)
    return metrics, out


def file_sha256(path: Path) -> str:
    """Names the weights a metrics file came from, whatever the checkpoint is called."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def predict(model_dir: Path, inputs: list[str], restore: str = "best"
            ) -> tuple[Task, list[dict[str, Any]]]:
    trained = load_trained(model_dir, restore)
    task = trained.task  # its predict() refuses in one line when the task has none
    return task, task.predict(trained.model, trained.params, inputs, trained.device,
                              trained.data_info)
