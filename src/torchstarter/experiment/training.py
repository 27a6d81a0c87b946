"""`train`: run the engine on an experiment folder and write everything it produces there."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from torchstarter.engine.distributed import SINGLE, Distributed, from_environment, shutdown
from torchstarter.engine.interrupt import GracefulStop, StopRequested
from torchstarter.engine.optim import RESUME_FIXED_KEYS, extend_schedule
from torchstarter.engine.rng import seed_everything
from torchstarter.engine.trainer import EpochResult, Trainer
from torchstarter.errors import UserError
from torchstarter.experiment import files
from torchstarter.experiment.lock import run_lock
from torchstarter.experiment.run_record import RunRecord
from torchstarter.experiment.tracking import EpochTrackers
from torchstarter.tasks import Task
from torchstarter.tasks.registry import load_experiment
from torchstarter.utils.atomic import write_json

log = logging.getLogger("torchstarter")


def setup_torch(params: Params, dist: Distributed = SINGLE) -> torch.device:
    if params.num_threads is not None:
        torch.set_num_threads(params.num_threads)
    seed_everything(params.seed)
    device = files.resolve_device(params.device, dist.local_rank)
    if params.precision == "bf16" and not bf16_supported(device):
        log.warning("precision bf16: this %s has no native bf16 support, so autocast will be "
                    "emulated and slow; use fp32", device.type.upper())
    if params.precision == "fp16" and device.type == "cpu":
        log.warning("precision fp16 on the CPU is emulated and several times slower than "
                    "fp32; use bf16 or fp32 there, fp16 on GPUs")
    return device


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def load_splits(task: Task, params: Params, data_dir: Path, splits: tuple[str, ...],
                data_info: dict[str, Any] | None = None) -> dict[str, Any]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: data folder not found; check --data-dir")
    out = {}
    for split in splits:
        data = task.read_split(params, data_dir, split, data_info)
        if len(data) == 0:
            raise UserError(f"{data_dir}: split '{split}' is empty; rebuild the dataset")
        out[split] = data
    return out


def format_metrics(metrics: Mapping[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def train(model_dir: Path, data_dir: Path, restore: str | None = None,
          overrides: Mapping[str, Any] | None = None, overwrite: bool = False,
          stop_after_epoch: int | None = None, console: bool = True) -> Trainer:
    """Train the experiment in model_dir; return the trainer at the end of the run."""
    model_dir = Path(model_dir)
    task, params = load_experiment(model_dir / files.PARAMS, overrides)
    dist = from_environment()  # several processes when launched by torchrun
    finished = False
    try:
        # Only the first process writes to the model dir; the others only read it.
        with run_lock(model_dir) if dist.is_main else contextlib.nullcontext(), \
                GracefulStop() as stop:
            if dist.is_main:
                files.remove_stale_temp_files(model_dir)  # only a dead run can leave them
            trainer = _train(model_dir, data_dir, task, params, restore, overwrite,
                             stop_after_epoch, console, stop, dist)
        finished = True
        return trainer
    finally:
        shutdown(dist, finished)


def _train(model_dir: Path, data_dir: Path, task: Task, params: Params, restore: str | None,
           overwrite: bool, stop_after_epoch: int | None, console: bool, stop: GracefulStop,
           dist: Distributed) -> Trainer:
    main = dist.is_main
    previous = files.existing_outputs(model_dir) if main else []
    # A run that stopped before its first checkpoint left only a log: nothing to continue,
    # so a fresh run moves those files aside (never deletes them) instead of refusing.
    nothing_to_restore = not any((model_dir / name).exists()
                                 for name in files.CHECKPOINTS.values())
    if restore is None and previous and not overwrite and not nothing_to_restore:
        raise UserError(f"{model_dir}: already holds a run ({', '.join(previous[:3])}); pass "
                        f"--restore last to continue it, or --overwrite to start over (the "
                        f"old files move to {files.ARCHIVE}/)")
    state = None
    if restore is not None:
        path = files.checkpoint_path(model_dir, restore)
        if restore in files.CHECKPOINTS and not path.exists() and previous:
            raise UserError(f"{path}: not found: the earlier run stopped before its first "
                            f"checkpoint; train without --restore (its files move to "
                            f"{files.ARCHIVE}/)")
        state = load_checkpoint(path)
        if state.get("task") != task.name:
            raise UserError(f"{path}: a checkpoint of task '{state.get('task')}', but "
                            f"{model_dir / files.PARAMS} trains task '{task.name}'; restore a "
                            f"checkpoint of the same task and architecture")
        _check_resumable(state, params, path)
    device = setup_torch(params, dist)
    if not Path(data_dir).is_dir():
        raise UserError(f"{data_dir}: data folder not found; check --data-dir")
    data_info = task.describe_data(params, Path(data_dir)) if task.describe_data else None
    if state is not None and state.get("data_info") != data_info:
        raise UserError(f"{data_dir}: the data description (e.g. vocabulary) differs from the "
                        f"one the checkpoint was trained with; restore with the same data dir")
    data = load_splits(task, params, data_dir, ("train", "val"), data_info)
    archived = files.archive_outputs(model_dir) if restore is None and previous else None
    record = RunRecord(model_dir if main else None, device, params.seed, restore)
    try:
        with _out_of_memory_as_user_error(device):
            trainer = _run(model_dir, data_dir, task, params, device, data_info, data, state,
                           restore, archived, console, stop_after_epoch, stop, dist)
    # When the disk is full, run.json cannot be written either: the first error is the one
    # the user needs to see, so a failing record write never replaces it.
    except StopRequested as exc:
        with contextlib.suppress(OSError):
            record.end("interrupted", str(exc))
        raise
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            record.end("interrupted", "KeyboardInterrupt")
        raise
    except BaseException as exc:
        with contextlib.suppress(OSError):
            record.end("failed", str(exc) if isinstance(exc, UserError)
                       else f"{type(exc).__name__}: {exc}")
        raise
    complete = trainer.epoch >= params.num_epochs or trainer.early_stopping.should_stop
    try:
        record.end("finished" if complete else "interrupted",
                   None if complete else f"paused after epoch {trainer.epoch}")
    except OSError as exc:  # the run itself is complete and saved: say so, do not fail it
        log.warning("%s", exc)
    return trainer


def _run(model_dir: Path, data_dir: Path, task: Task, params: Params, device: torch.device,
         data_info: dict[str, Any] | None, data: dict[str, Any], state: dict[str, Any] | None,
         restore: str | None, archived: Path | None, console: bool,
         stop_after_epoch: int | None, stop: GracefulStop, dist: Distributed) -> Trainer:
    main = dist.is_main
    with files.run_logging(model_dir / files.LOG if main else None, console and main) as logger:
        trainer = Trainer(task, params, device, data_info, dist)
        trainer.stop = stop
        if state is not None:
            check_compatible(trainer.model, state["model"], files.checkpoint_path(model_dir,
                                                                                   restore))
            trainer.load_state_dict(state)
            extend_schedule(trainer.scheduler, params.num_epochs)
            if main:
                write_metrics_files(model_dir, trainer)
            _log_param_changes(state["params"], params)
            partial = trainer.partial_epoch
            logger.info("==== resumed from %s after epoch %d%s (best %s %s) ====", restore,
                        trainer.epoch, f", mid-epoch {partial['epoch']} at step "
                        f"{partial['step']}" if partial else "", params.metric,
                        trainer.early_stopping.best)
        else:
            logger.info("==== new run: task %s, %s ====", task.name, time.strftime("%c"))
            if archived is not None:
                logger.info("previous run's files moved to %s", archived)
        logger.info("data: %s; train %d, val %d examples; device %s, %d threads%s",
                    data_dir, len(data["train"]), len(data["val"]), device,
                    torch.get_num_threads(), f"; {dist.world_size} processes (DDP), global "
                    f"batch {params.batch_size}" if dist.enabled else "")
        if main:
            write_json(model_dir / files.RESOLVED_PARAMS, params.to_dict())
        if trainer.early_stopping.should_stop:
            logger.info("nothing to do: early stopping fired after epoch %d (%d epochs without "
                        "a better val %s); raise early_stopping_patience or set it to null to "
                        "train further", trainer.epoch, trainer.early_stopping.bad_epochs,
                        params.metric)
            return trainer
        if trainer.epoch >= params.num_epochs:
            logger.info("nothing to do: %d of %d epochs done; raise num_epochs (e.g. --set "
                        "num_epochs=%d) to train further", trainer.epoch, params.num_epochs,
                        params.num_epochs + 10)
            return trainer

        trackers = EpochTrackers(model_dir, params, trainer.epoch) if main else None

        def on_epoch_end(result: EpochResult) -> None:
            if not main:
                return
            _save_epoch(model_dir, trainer, result)
            logger.info("epoch %d/%d  train: %s | val: %s | lr %.2e | %.1fs%s", result.epoch,
                        params.num_epochs, format_metrics(result.train),
                        format_metrics(result.val), result.lr, result.seconds,
                        "  *best" if result.improved else "")
            trackers.epoch_end(result, trainer.history)

        try:
            trainer.fit(data["train"], data["val"], on_epoch_end, stop_after_epoch)
        except StopRequested as exc:
            if main and trainer.partial_epoch is not None:  # mid-epoch: save where it stopped
                save_checkpoint(trainer.state_dict(), model_dir / files.CHECKPOINTS["last"])
            logger.info("%s; last.pt holds the state to resume from: rerun with "
                        "--restore last", exc)
            raise
        finally:
            if trackers is not None:
                trackers.close()
        es = trainer.early_stopping
        if es.should_stop:
            logger.info("early stopping: no better val %s for %d epochs", params.metric,
                        es.patience)
        if es.best is None:
            logger.warning("no epoch gave a finite val %s, so best.pt was not written; "
                           "check the data and lower learning_rate", params.metric)
        else:
            logger.info("best val %s %.4f at epoch %d; files in %s", params.metric, es.best,
                        es.best_epoch, model_dir)
    return trainer


@contextlib.contextmanager
def _out_of_memory_as_user_error(device: torch.device) -> Iterator[None]:
    """A model or batch too big for the machine is a setting to change, not a crash."""
    try:
        yield
    except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError too
        text = str(exc)
        if not (isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in text
                or "out of memory" in text.lower()):
            raise
        raise UserError(f"out of {device.type.upper()} memory while training "
                        f"({text.splitlines()[0][:120]}); lower batch_size or the model's "
                        f"size (e.g. num_channels), or use precision bf16") from None


def _save_epoch(model_dir: Path, trainer: Trainer, result: EpochResult) -> None:
    """One write serves best and last; best lands first, so a crash never loses a new best."""
    best = (model_dir / files.CHECKPOINTS["best"],) if result.improved else ()
    save_checkpoint(trainer.state_dict(), model_dir / files.CHECKPOINTS["last"], also=best)
    write_metrics_files(model_dir, trainer)


def write_metrics_files(model_dir: Path, trainer: Trainer) -> None:
    """history.json and the val metrics files, all derived from the checkpointed history.

    Written after the checkpoint and again on every restore, so a crash between the two
    can leave them one epoch behind for a moment, never out of step for good.
    """
    def val_row(row: dict[str, Any]) -> dict[str, Any]:
        return {"epoch": row["epoch"], **{k[4:]: v for k, v in row.items()
                                          if k.startswith("val_")}}

    history = trainer.history
    best_epoch = trainer.early_stopping.best_epoch
    if best_epoch is not None:
        write_json(model_dir / files.VAL_BEST, val_row(history[best_epoch - 1]))
    if history:
        write_json(model_dir / files.VAL_LAST, val_row(history[-1]))
    write_json(model_dir / files.HISTORY, history)


def _check_resumable(state: Mapping[str, Any], new: Params, path: Path) -> None:
    old = state["params"]
    # A checkpoint taken mid-epoch resumes at a batch position, which needs the same batches.
    fixed = RESUME_FIXED_KEYS + (("batch_size", "seed") if state.get("partial_epoch") else ())
    changed = [f"{k} {old.get(k)!r} -> {new[k]!r}" for k in fixed if old.get(k) != new[k]]
    if changed:
        raise UserError(f"{path}: --restore continues a run with its optimizer and schedule, "
                        f"but params changed {'; '.join(changed)}; set them back, or start a "
                        f"new run from these weights in another model dir")


def _log_param_changes(old: Mapping[str, Any], new: Params) -> None:
    changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    if changed:
        log.info("params changed since the checkpoint: %s", "; ".join(changed))
