"""run.json: what ran in a model dir, with which code, and how it ended.

Written when a run starts (status "running") and again when it ends (finished,
failed or interrupted), so a folder always says whether its numbers are complete.
A search marks a trial it stopped early as "pruned".
A process killed outright leaves "running"; the next run notes that in `attempts`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import torchstarter
from torchstarter.experiment.files import RUN_RECORD
from torchstarter.utils.atomic import write_json

STATUSES = ("running", "finished", "failed", "interrupted")


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def git_commit(folder: Path) -> str | None:
    """The commit checked out where the command ran, with '-dirty' for local changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                              text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _program() -> str:
    """`torchstarter`, whether it ran as the console script or as `python -m torchstarter`."""
    name = Path(sys.argv[0]).name
    return "torchstarter" if name in ("torchstarter", "__main__.py") else name


def read_run_record(model_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(model_dir) / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


class RunRecord:
    def __init__(self, model_dir: Path | None, device: torch.device, seed: int,
                 restored_from: str | None):
        """model_dir None: a process that must not write (not the first of a DDP run)."""
        self.path = Path(model_dir) / RUN_RECORD if model_dir is not None else None
        self.record: dict[str, Any] = {}
        if model_dir is None:
            return
        previous = read_run_record(model_dir) if restored_from else None
        attempts = list(previous.get("attempts", [])) if previous else []
        if previous:  # keep the story of earlier invocations of this run
            attempts.append({k: previous.get(k) for k in ("command", "started", "ended",
                                                             "status", "error")})
        self.record = {
            "status": "running",
            "command": [_program(), *sys.argv[1:]],
            "cwd": str(Path.cwd()),
            "started": _now(),
            "ended": None,
            "torchstarter_version": torchstarter.__version__,
            "torch_version": torch.__version__,
            "python_version": sys.version.split()[0],
            "device": str(device),
            "seed": seed,
            "git_commit": git_commit(Path.cwd()),
            "restored_from": restored_from,
            "error": None,
            "attempts": attempts,
        }
        write_json(self.path, self.record)

    def end(self, status: str, error: str | None = None) -> None:
        assert status in STATUSES
        if self.path is None:
            return
        self.record.update(status=status, ended=_now(), error=error)
        write_json(self.path, self.record)
