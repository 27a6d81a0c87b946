"""Finding the experiments under a folder and reading what each run left in it.

Every file is optional and any may be corrupt: a run can be half-finished, killed, or
written by an older torchstarter. What cannot be read becomes a blank cell and a note,
never an exception, so one broken folder cannot hide the results of all the others.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchstarter.config.schema import COMMON_SCHEMA
from torchstarter.experiment import files
from torchstarter.experiment.lock import held_by_live_process

RUN_INFO = files.RUN_RECORD  # older runs lack it
TEST_BEST = files.metrics_file("test", "best")
# Outputs that show a folder has been trained (a folder with only params.json has not).
RUN_MARKERS = frozenset(files.RUN_OUTPUTS)
# Folders that never hold experiments: archived runs and TensorBoard event files.
SKIPPED_FOLDERS = frozenset({files.ARCHIVE, files.TENSORBOARD})
# Keys of a metrics file that are not metrics.
NOT_METRICS = ("epoch", "examples")
_LOG_TAIL_BYTES = 4096


@dataclass
class Experiment:
    """What one experiment folder holds; None where a file is absent or unreadable."""

    folder: Path
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    ran: bool = False  # params come from resolved_params.json: every key is known
    metric: str | None = None
    mode: str | None = None
    history: list[dict[str, Any]] | None = None
    val_best: dict[str, float] | None = None
    best_epoch: int | None = None
    test: dict[str, float] | None = None
    test_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95%
    status: str = "unknown"
    notes: list[str] = field(default_factory=list)

    @property
    def epochs(self) -> int | None:
        if self.history is None:
            return 0 if self.status == "not started" else None
        return len(self.history)


def find_experiment_folders(parent: Path, notes: list[str]) -> list[Path]:
    """Folders holding params.json, at any depth, in path order.

    previous_runs/ and hidden folders are skipped. A folder with params.json that was never
    trained but has experiments below it is the base of a search, not an experiment.
    """
    found: list[tuple[Path, bool]] = []

    def unreadable(error: OSError) -> None:
        notes.append(f"{error.filename}: cannot list this folder ({error.strerror}); "
                     f"experiments inside it are missing")

    for folder, subfolders, names in os.walk(parent, onerror=unreadable):
        subfolders[:] = sorted(d for d in subfolders
                               if d not in SKIPPED_FOLDERS and not d.startswith("."))
        if files.PARAMS in names:
            found.append((Path(folder), any(m in names for m in RUN_MARKERS)))
    above_others = {ancestor for f, _ in found for ancestor in f.parents}
    return [f for f, trained in found if trained or f not in above_others]


def read_experiment(folder: Path, parent: Path) -> Experiment:
    """Everything synthesize needs from one folder, never raising on bad content."""
    name = folder.relative_to(parent).as_posix()
    exp = Experiment(folder=folder, name=name)
    resolved = _read_object(folder / files.RESOLVED_PARAMS, exp) \
        if (folder / files.RESOLVED_PARAMS).exists() else None
    if resolved is not None:
        exp.params, exp.ran = resolved, True
        raw = _read_object(folder / files.PARAMS, exp) if (folder / files.PARAMS).exists() \
            else None
        edited = sorted(k for k, v in (raw or {}).items() if resolved.get(k, v) != v)
        if edited:
            exp.notes.append(f"{name}: params.json differs from the params its run used "
                             f"({', '.join(edited[:5])}): the row shows the run's (a --set "
                             f"override, or an edit since; train again to apply an edit)")
    else:
        raw = _read_object(folder / files.PARAMS, exp)
        exp.params = {} if raw is None else fill_defaults(raw)
    metric = exp.params.get("metric")
    exp.metric = metric if isinstance(metric, str) else None
    mode = exp.params.get("metric_mode")
    exp.mode = mode if mode in ("max", "min") else (
        None if exp.metric is None else ("min" if exp.metric == "loss" else "max"))

    if (folder / files.HISTORY).exists():
        history = _read_json(folder / files.HISTORY, exp, list)
        if history is not None:
            exp.history = [row for row in history if isinstance(row, dict)]
    if (folder / files.VAL_BEST).exists():
        best = _read_object(folder / files.VAL_BEST, exp)
        if best is not None:
            exp.val_best = scalar_metrics(best)
            epoch = best.get("epoch")
            exp.best_epoch = epoch if isinstance(epoch, int) else None
    if (folder / TEST_BEST).exists():
        test = _read_object(folder / TEST_BEST, exp)
        if test is not None:
            exp.test = scalar_metrics(test)
            found = test.get("intervals")
            for name, interval in (found.items() if isinstance(found, dict) else ()):
                if isinstance(interval, dict) and all(
                        isinstance(interval.get(k), int | float) for k in ("low", "high")):
                    exp.test_intervals[name] = (interval["low"], interval["high"])
    exp.status = _status(exp)
    return exp


def fill_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """params.json of a folder never trained, with the defaults `train` would fill in.

    Without this, every default key would look like a searched parameter next to the
    resolved_params.json of trained siblings. Task defaults are known for built-in tasks
    only: a user's task module is not imported just to draw a table.
    """
    from torchstarter.tasks.registry import BUILTIN_TASKS

    params = {k: f.default for k, f in COMMON_SCHEMA.items() if not f.required}
    task = raw.get("task")
    default_metric = None
    if isinstance(task, str) and task in BUILTIN_TASKS:
        task_obj = _builtin_task(task)
        params.update({k: f.default for k, f in task_obj.schema.items() if not f.required})
        default_metric = task_obj.default_metric
    params.update(raw)
    if params.get("metric") is None and default_metric is not None:
        params["metric"] = default_metric
    if params.get("metric_mode") is None and isinstance(params.get("metric"), str):
        params["metric_mode"] = "min" if params["metric"] == "loss" else "max"
    if params.get("metric") is None:  # the task's default is unknown here, not null
        params.pop("metric", None)
        params.pop("metric_mode", None)
    return params


_TASKS: dict[str, Any] = {}


def _builtin_task(name: str) -> Any:
    if name not in _TASKS:
        from torchstarter.tasks import load_task

        _TASKS[name] = load_task(name)
    return _TASKS[name]


def scalar_metrics(values: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of a metrics file (per-type tables and counts left out)."""
    return {k: float(v) for k, v in values.items()
            if k not in NOT_METRICS and isinstance(v, int | float) and not isinstance(v, bool)}


def _status(exp: Experiment) -> str:
    info = None
    if (exp.folder / RUN_INFO).exists():
        info = _read_object(exp.folder / RUN_INFO, exp)
    if info is not None and isinstance(info.get("status"), str):
        status = info["status"]
        if status == "running" and not held_by_live_process(exp.folder):
            return "stopped"  # killed without a chance to say so; synthesize notes it
        if status == "failed" and info.get("error"):
            exp.notes.append(f"{exp.name}: failed: {_one_line(str(info['error']))}")
        return status
    if exp.history is None:
        if (exp.folder / files.HISTORY).exists():
            return "unknown"
        return "not started"
    planned = exp.params.get("num_epochs")
    if isinstance(planned, int) and len(exp.history) >= planned:
        return "finished"
    if exp.history and _log_says_stopped_early(exp.folder / files.LOG):
        return "finished"
    return "incomplete"


def _log_says_stopped_early(log: Path) -> bool:
    """Whether the last run in train.log ended by early stopping (runs without run.json)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return False
    last_start = max(tail.rfind("==== new run"), tail.rfind("==== resumed"))
    return "early stopping:" in tail[last_start:]


def _read_object(path: Path, exp: Experiment) -> dict[str, Any] | None:
    return _read_json(path, exp, dict)


def _read_json(path: Path, exp: Experiment, kind: type) -> Any:
    """The JSON in path if it is a `kind`; else None and a note naming the file."""
    where = (Path(exp.name) / path.name).as_posix() if exp.name != "." else path.name
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        exp.notes.append(f"{where}: unreadable ({_one_line(str(exc))}); its cells are blank")
        return None
    except json.JSONDecodeError as exc:
        exp.notes.append(f"{where}: malformed JSON at line {exc.lineno} column {exc.colno}; "
                         f"its cells are blank")
        return None
    except RecursionError:
        exp.notes.append(f"{where}: JSON nested too deep to read; its cells are blank")
        return None
    if not isinstance(value, kind):
        expected = "an object" if kind is dict else "a list"
        exp.notes.append(f"{where}: expected {expected}, found {type(value).__name__}; "
                         f"its cells are blank")
        return None
    return value


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
