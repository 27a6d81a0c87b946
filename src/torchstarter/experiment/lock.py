"""One training run per model dir at a time (utils.locking's lock on .train.lock)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from torchstarter.errors import UserError
from torchstarter.utils.atomic import disk_errors_as_user_errors
from torchstarter.utils.locking import FileLock, LockUnsupported, is_locked, lock_holder

LOCK = ".train.lock"
log = logging.getLogger("torchstarter")
# A look at the lock (synthesize asking whether a run is alive) holds it for a moment;
# a starting run waits this long before it concludes that another run holds the folder.
_PATIENCE_SECONDS = 1.0


def held_by_live_process(model_dir: Path) -> bool:
    """Whether a `train` is running in model_dir now (a killed run's file does not count)."""
    return is_locked(Path(model_dir) / LOCK)


@contextlib.contextmanager
def run_lock(model_dir: Path) -> Iterator[None]:
    """Hold model_dir/.train.lock for the run; the file is removed when the run ends."""
    path = Path(model_dir) / LOCK
    lock = FileLock(path, remove_on_release=True, private=True)
    unsupported = None
    try:
        with disk_errors_as_user_errors(path):  # a run's first write: shows an unwritable dir
            taken = lock.acquire(wait=_PATIENCE_SECONDS)
    except LockUnsupported as exc:
        unsupported, taken = exc.strerror, True
    if unsupported is not None:
        log.warning("%s: %s; train runs without it, so a second train in this folder at "
                    "the same time would not be refused", path, unsupported)
        path.unlink(missing_ok=True)
    elif not taken:
        holder = lock_holder(path)
        raise UserError(f"{model_dir}: a run is already training here"
                        f"{f' ({holder})' if holder else ''}; wait for it or stop it, then "
                        f"try again")
    try:
        yield
    finally:
        lock.release()
