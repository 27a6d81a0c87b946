"""Finding a task from params.json's `task`: a built-in name, a module path or a .py file."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torchstarter.config import COMMON_SCHEMA, Params, validate_params
from torchstarter.config.params import read_params_file
from torchstarter.errors import UserError
from torchstarter.tasks.base import Task

BUILTIN_TASKS = {"signs": "torchstarter.tasks.signs", "ner": "torchstarter.tasks.ner"}


def load_task(spec: str, base_dir: Path | None = None) -> Task:
    """Import the task named by `spec`; relative .py paths resolve against `base_dir`."""
    if spec in BUILTIN_TASKS:
        return Task.from_module(spec, importlib.import_module(BUILTIN_TASKS[spec]))
    if spec.endswith(".py"):
        path = Path(spec)
        # Relative to the folder of the params.json first, so an experiment can move.
        if not path.is_absolute() and base_dir is not None and (base_dir / path).is_file():
            path = base_dir / path
        if not path.is_file():
            raise UserError(f"task file {spec} not found (looked in {path.parent}); "
                            f"give a built-in task ({', '.join(BUILTIN_TASKS)}) or a path")
        module_name = f"torchstarter_user_task_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
        return Task.from_module(spec, module)
    try:
        module = importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        raise UserError(f"unknown task '{spec}' ({exc}); use a built-in task "
                        f"({', '.join(BUILTIN_TASKS)}), an importable module or a .py file"
                        ) from None
    return Task.from_module(spec, module)


def full_schema(task: Task) -> dict[str, Any]:
    clash = set(task.schema) & set(COMMON_SCHEMA)
    if clash:
        raise UserError(f"task '{task.name}' redefines engine keys: {', '.join(sorted(clash))}")
    return {**COMMON_SCHEMA, **task.schema}


def resolve_params(raw: Mapping[str, Any], source: str, base_dir: Path | None = None
                   ) -> tuple[Task, Params]:
    """Validate raw params for the task they name; fill metric and metric_mode defaults."""
    spec = raw.get("task")
    if not isinstance(spec, str) or not spec:
        raise UserError(f"{source}: missing required key 'task' (a built-in task such as "
                        f"'signs', or your own task module)")
    task = load_task(spec, base_dir)
    params = validate_params(raw, full_schema(task), source)
    metric = params.metric or task.default_metric
    if metric not in task.metric_names:
        raise UserError(f"{source}: key 'metric': '{metric}' is not one of "
                        f"{', '.join(task.metric_names)}")
    mode = params.metric_mode or ("min" if metric == "loss" else "max")
    return task, params.replace(metric=metric, metric_mode=mode)


def load_experiment(params_path: Path, overrides: Mapping[str, Any] | None = None
                    ) -> tuple[Task, Params]:
    raw = read_params_file(params_path)
    for key, value in (overrides or {}).items():
        raw[key] = value
    source = str(params_path) + (" (with --set)" if overrides else "")
    return resolve_params(raw, source, base_dir=Path(params_path).parent)
