"""Names of the files in a model dir, and the console/file logging of a run."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from torchstarter.errors import UserError

if TYPE_CHECKING:
    import torch

PARAMS = "params.json"
RESOLVED_PARAMS = "resolved_params.json"
LOG = "train.log"
HISTORY = "history.json"
CHECKPOINTS = {"last": "last.pt", "best": "best.pt"}
VAL_BEST = "metrics_val_best_weights.json"
VAL_LAST = "metrics_val_last_weights.json"
ARCHIVE = "previous_runs"
RUN_RECORD = "run.json"
TENSORBOARD = "tensorboard"
LEARNING_CURVE = "learning_curve.png"

# Everything a training run writes; a fresh run refuses to start over these.
RUN_OUTPUTS = (LOG, HISTORY, RESOLVED_PARAMS, VAL_BEST, VAL_LAST, *CHECKPOINTS.values(),
               RUN_RECORD, TENSORBOARD, LEARNING_CURVE)


def own_checkpoint(model_dir: Path, restore: str) -> str | None:
    """'best' or 'last' when `restore` names one of this model dir's own checkpoints (by
    keyword or by any path to the same file), else None: the weights come from elsewhere."""
    if restore in CHECKPOINTS:
        return restore
    given = Path(restore)
    own = {name: Path(model_dir) / file for name, file in CHECKPOINTS.items()}
    with contextlib.suppress(OSError):
        for name, path in own.items():  # by name first: best.pt may be a link to last.pt
            if given.resolve() == path.resolve():
                return name
        for name, path in own.items():
            if path.exists() and given.samefile(path):
                return name
    return None


def metrics_file(split: str, restore: str, digest: str | None = None) -> str:
    """metrics_<split>_best.json for the experiment's own checkpoints; weights from another
    file get a name of their own (its stem and the start of its sha256), so that they can
    never replace a result that train or evaluate wrote for this experiment."""
    if restore in CHECKPOINTS:
        return f"metrics_{split}_{restore}.json"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(restore).stem)[:40]
    return f"metrics_{split}_from_{stem}_{(digest or '0' * 8)[:8]}.json"


def predictions_file(split: str, restore: str, digest: str | None = None) -> str:
    """predictions_<split>_best.jsonl beside metrics_<split>_best.json (named alike)."""
    return "predictions_" + metrics_file(split, restore, digest).removeprefix(
        "metrics_").removesuffix(".json") + ".jsonl"


def checkpoint_path(model_dir: Path, restore: str) -> Path:
    """`last`/`best` name files in the model dir; anything else is a path."""
    if restore in CHECKPOINTS:
        return Path(model_dir) / CHECKPOINTS[restore]
    return Path(restore)


def existing_outputs(model_dir: Path) -> list[str]:
    return [name for name in RUN_OUTPUTS if (Path(model_dir) / name).exists()]


def remove_stale_temp_files(model_dir: Path) -> list[str]:
    """Delete temp files a killed run left mid-write (never a finished output)."""
    removed = []
    for item in Path(model_dir).glob(".*"):
        if item.suffix in (".tmp", ".link") and any(item.name.startswith(f".{name}.")
                                                    for name in RUN_OUTPUTS):
            item.unlink(missing_ok=True)
            removed.append(item.name)
    return removed


def archive_outputs(model_dir: Path) -> Path:
    """Move a previous run's outputs aside (never delete them) before a fresh run."""
    dest = Path(model_dir) / ARCHIVE / time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while dest.exists():
        dest = dest.with_name(f"{dest.name.split('.')[0]}.{suffix}")
        suffix += 1
    dest.mkdir(parents=True)
    for item in Path(model_dir).iterdir():
        if item.name in RUN_OUTPUTS or item.name.startswith("metrics_"):
            shutil.move(str(item), dest / item.name)
    return dest


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """cuda:<local rank> under torchrun, so each process drives its own GPU."""
    import torch  # here, so that commands which only read a model dir start without torch

    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("params: device is 'cuda' but no CUDA GPU is visible; set "
                            "device to 'auto' or 'cpu'")
        return torch.device("cuda", local_rank)  # with its index, so device checks compare equal
    return torch.device("cpu")


class _QuietFileHandler(logging.FileHandler):
    """A log line lost to a full disk must not print logging's own traceback: the write
    that matters (a checkpoint) fails with a clear error of its own."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


class _TqdmHandler(logging.Handler):
    """Console lines that do not break an active progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record))


@contextlib.contextmanager
def run_logging(log_file: Path | None, console: bool = True) -> Iterator[logging.Logger]:
    """Route the 'torchstarter' logger to the console (INFO) and to log_file (DEBUG)."""
    logger = logging.getLogger("torchstarter")
    # For the run only: the level, and no copies of its lines through the root logger.
    before = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handlers: list[logging.Handler] = []
    if console:
        handler = _TqdmHandler(logging.INFO)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handlers.append(handler)
    if log_file is not None:
        handler = _QuietFileHandler(log_file, mode="a", encoding="utf-8")
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handlers.append(handler)
    for h in handlers:
        logger.addHandler(h)
    try:
        yield logger
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(before[0])
        logger.propagate = before[1]
