"""One training run per model dir at a time: a lock file holding the owner's pid."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from torchstarter.errors import UserError
from torchstarter.utils.atomic import disk_errors_as_user_errors

LOCK = ".train.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def held_by_live_process(model_dir: Path) -> bool:
    """Whether a `train` is running in model_dir now (a stale lock does not count)."""
    try:
        pid = int((Path(model_dir) / LOCK).read_text().strip() or "0")
    except (OSError, ValueError):
        return False
    return pid > 0 and _alive(pid)


@contextlib.contextmanager
def run_lock(model_dir: Path) -> Iterator[None]:
    """Hold model_dir/.train.lock for the run; a lock left by a dead process is taken over."""
    path = Path(model_dir) / LOCK
    with disk_errors_as_user_errors(path):  # a run's first write: shows an unwritable dir
        _take(path, model_dir)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _take(path: Path, model_dir: Path) -> None:
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(path.read_text().strip() or "0")
            except (OSError, ValueError):
                owner = 0
            if owner and owner != os.getpid() and _alive(owner):
                raise UserError(f"{model_dir}: a run is already training here (pid {owner}); "
                                f"wait for it or stop it, then try again") from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
        except BaseException:
            path.unlink(missing_ok=True)  # an empty lock would read as stale anyway
            raise
        return
    raise UserError(f"{path}: could not take the lock; remove the file if no run is active")
