"""Trial folders on disk: created with their params in one step, run by one worker at a time.

A trial folder is an ordinary experiment folder, so what it holds (run.json, history,
metrics files) is the truth about its run; the Optuna study only indexes it. The claim
is utils.locking's flock on a file in the folder: the kernel drops it when its holders
die, so a killed search never leaves a stale claim, and the `train` child inherits it, so
a child that outlives its search keeps the folder until it exits (which is why the claim
file stays when a claim is released).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchstarter.config.params import read_params_file
from torchstarter.errors import UserError
from torchstarter.experiment import files
from torchstarter.utils.atomic import new_temp_folder, write_json
from torchstarter.utils.locking import FileLock, lock_holder

CLAIM = ".search.lock"
SAMPLING = ".search.sampling"  # in the parent: held while a process draws a new trial
TRIAL_LOG = "search_trial.log"
THREADS_FILE = ".search_threads"  # a new thread count for the running trial (cli/search_trial.py)
RUN_RECORD = "run.json"


def child_params(base_raw: Mapping[str, Any], parent: Path, values: Mapping[str, Any],
                 overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Base params plus the trial's values; a task file beside the base is found from below."""
    params = {**base_raw, **overrides, **values}
    task = params.get("task")
    if (isinstance(task, str) and task.endswith(".py") and not Path(task).is_absolute()
            and (Path(parent) / task).is_file()):
        params["task"] = str(Path("..") / task)
    return params


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _resolved(params: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """Every param with its default filled in: "seed": 230 written out is no change."""
    from torchstarter.tasks.registry import resolve_params

    return resolve_params(params, str(Path(folder) / files.PARAMS), Path(folder))[1].to_dict()


def ensure_trial_folder(parent: Path, name: str, params: Mapping[str, Any]) -> Path:
    """Create parent/name with its params.json in one rename, or check the existing one.

    The folder appears complete or not at all, so another worker that sees it can read
    its params. An existing folder must hold these params (defaults filled in, so a
    default written out is no change): a study never mixes trials of different bases.
    """
    folder = Path(parent) / name
    if not folder.exists():
        staging = new_temp_folder(Path(parent), f".{name[:40]}.", ".new")
        try:
            write_json(staging / files.PARAMS, dict(params))
            os.rename(staging, folder)  # fails if another worker created it first
        except OSError:
            if not folder.is_dir():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not (folder / files.PARAMS).is_file():
        raise UserError(f"{folder}: exists without a params.json; move it away so the search "
                        f"can use this name")
    existing = read_params_file(folder / files.PARAMS)
    if _same(existing, dict(params)):
        return folder
    old, new = _resolved(existing, folder), _resolved(params, folder)
    changed = sorted(k for k in set(old) | set(new) if not _same(old.get(k), new.get(k)))
    if changed:
        raise UserError(f"{folder / files.PARAMS}: differs from the base params plus this "
                        f"trial's values (keys {', '.join(changed)}); restore "
                        f"{Path(parent) / files.PARAMS} and pass the same --set values as "
                        f"before (if any), or search in a new parent folder")
    return folder


def claim(folder: Path) -> FileLock | None:
    """Lock the folder for this process; None if another process holds it."""
    lock = FileLock(Path(folder) / CLAIM)
    return lock if lock.acquire() else None


def claim_holder(folder: Path) -> str | None:
    """Who holds the folder, as its claim file says: "pid N", with the host when not this one."""
    return lock_holder(Path(folder) / CLAIM)


@contextmanager
def sampling_turn(parent: Path) -> Iterator[None]:
    """One process at a time counts the study's trials and draws a new one (held for
    milliseconds), so searches sharing a study never draw more than n_trials together."""
    with FileLock(Path(parent) / SAMPLING):
        yield


def release(lock: FileLock) -> None:
    lock.release()  # the file stays: a child handed the descriptor may still hold it


@dataclass(frozen=True)
class DiskRun:
    """What a trial folder says about its run."""

    state: str  # "new" (nothing trained yet), "unfinished", "finished" or "failed"
    value: float | None = None
    error: str | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        return None


def best_value(folder: Path, metric: str) -> float | None:
    """The validation metric of the best epoch, the value the study optimizes."""
    row = _read_json(Path(folder) / files.VAL_BEST)
    value = row.get(metric) if isinstance(row, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _history_complete(folder: Path) -> bool:
    """For runs from before run.json: every planned epoch is in the history."""
    history = _read_json(Path(folder) / files.HISTORY)
    resolved = _read_json(Path(folder) / files.RESOLVED_PARAMS)
    if not isinstance(history, list) or not isinstance(resolved, dict):
        return False
    epochs = resolved.get("num_epochs")
    return isinstance(epochs, int) and len(history) >= epochs


def read_run(folder: Path, metric: str) -> DiskRun:
    record = _read_json(Path(folder) / RUN_RECORD)
    status = record.get("status") if isinstance(record, dict) else None
    if status == "finished" or (status is None and _history_complete(folder)):
        value = best_value(folder, metric)
        if value is None:
            return DiskRun("failed", error=f"no finite val {metric} in {files.VAL_BEST}")
        return DiskRun("finished", value)
    if status == "failed":
        return DiskRun("failed", error=record.get("error") or "the run failed; see train.log")
    return DiskRun("unfinished" if files.existing_outputs(folder) else "new")


def train_resume_args(folder: Path) -> list[str]:
    """How `train` picks up the folder: continue its checkpoint, or start over without one."""
    if (Path(folder) / files.CHECKPOINTS["last"]).is_file():
        return ["--restore", "last"]
    if files.existing_outputs(folder):
        return ["--overwrite"]  # killed before its first checkpoint; old files are archived
    return []


def last_error_line(log: Path, limit: int = 300) -> str:
    """The message of the child's `error: ...` line, else its last line: what the summary shows.

    The prefix goes: the search prints it after "failed:", which says the same.
    """
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, os.path.getsize(log) - 65536))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "no output"
    lines = [line.strip() for line in lines if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    text = (errors or lines or ["no output"])[-1]
    return text.removeprefix("error:").strip()[:limit]
