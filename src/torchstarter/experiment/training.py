"""`train`: run the engine on an experiment folder and write everything it produces there."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import COMMON_SCHEMA, Params
from torchstarter.engine.batching import iterate_groups
from torchstarter.engine.build import build_trainer, optimizer_steps_per_epoch
from torchstarter.engine.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from torchstarter.engine.distributed import SINGLE, Distributed, from_environment, shutdown
from torchstarter.engine.interrupt import GracefulStop, StopRequested
from torchstarter.engine.memory_format import choose_channels_last
from torchstarter.engine.optim import RESUME_FIXED_KEYS, extend_schedules, moves_per_step
from torchstarter.engine.rng import seed_everything
from torchstarter.engine.task import DataInfo, Task
from torchstarter.engine.threads import configure_threads
from torchstarter.engine.trainer import EpochResult, Trainer
from torchstarter.errors import ParamsError, UserError
from torchstarter.experiment import files
from torchstarter.experiment.lock import run_lock
from torchstarter.experiment.run_record import RunRecord
from torchstarter.experiment.tracking import EpochTrackers
from torchstarter.tasks.registry import load_experiment
from torchstarter.utils.atomic import write_json

log = logging.getLogger("torchstarter")
AUTO = "auto"  # --restore auto: last.pt when there is one, else a new run


def setup_torch(params: Params, dist: Distributed = SINGLE) -> torch.device:
    configure_threads(params.num_threads)
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
                data_info: DataInfo | None = None) -> dict[str, Any]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: data folder not found; check --data-dir")
    out = {}
    for split in splits:
        data = task.load_split(params, data_dir, split, data_info)
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
    return TrainingRun(model_dir, data_dir, restore, overrides, overwrite, stop_after_epoch,
                       console).run()


class TrainingRun:
    """One `train` of a model dir: check what it continues, load the data, fit, finish.

    run() takes the steps in that order under the model dir's lock and the Ctrl-C
    handler; each step leaves what the next needs on the object.
    """

    def __init__(self, model_dir: Path, data_dir: Path, restore: str | None = None,
                 overrides: Mapping[str, Any] | None = None, overwrite: bool = False,
                 stop_after_epoch: int | None = None, console: bool = True):
        self.model_dir, self.data_dir = Path(model_dir), Path(data_dir)
        self.restore, self.overwrite = restore, overwrite
        self.stop_after_epoch, self.console = stop_after_epoch, console
        self.task, self.params = load_experiment(self.model_dir / files.PARAMS, overrides)
        self.dist = SINGLE
        self.stop: GracefulStop | None = None  # the Ctrl-C handler run() installs
        self.previous: list[str] = []  # outputs of an earlier run in the model dir
        self.state: dict[str, Any] | None = None  # the checkpoint this run continues
        self.device = torch.device("cpu")
        self.data_info: DataInfo | None = None
        self.data: dict[str, Any] = {}
        self.trainer: Trainer | None = None
        self.layout_note: str | None = None
        self.auto_note: str | None = None  # what --restore auto chose, logged at the start
        self.train_loss: Callable[[Any, Any], Any] | None = None  # built with the data
        self.record: RunRecord | None = None

    @property
    def main(self) -> bool:
        """Only the first process writes to the model dir; the others only read it."""
        return self.dist.is_main

    def run(self) -> Trainer:
        self.dist = from_environment()  # several processes when launched by torchrun
        finished = False
        try:
            with run_lock(self.model_dir) if self.main else contextlib.nullcontext(), \
                    GracefulStop() as stop:
                self.stop = stop
                if self.main:
                    files.remove_stale_temp_files(self.model_dir)  # only a dead run leaves them
                self.check_restore()
                self.load_data()
                trainer = self.fit()
                self.finish(trainer)
            finished = True
            return trainer
        finally:
            shutdown(self.dist, finished)

    # ---- the steps ----------------------------------------------------------------------
    def check_restore(self) -> None:
        """Refuse a fresh run over an earlier one; read and check the checkpoint to continue."""
        model_dir, restore = self.model_dir, self.restore
        if restore is not None and self.overwrite:
            raise UserError(f"--restore {restore} and --overwrite: pass one of them: --restore "
                            f"continues the run in {model_dir}, --overwrite starts over")
        if restore == AUTO:  # a job that may be a requeued one: continue if there is a run
            last = model_dir / files.CHECKPOINTS["last"]
            self.restore = restore = "last" if last.exists() else None
            self.auto_note = "--restore auto: " + (f"continuing from {last.name}" if restore
                                                   else "no checkpoint yet, a new run")
        self.previous = files.existing_outputs(model_dir) if self.main else []
        # A run that stopped before its first checkpoint left only a log: nothing to
        # continue, so a fresh run moves those files aside (never deletes them).
        nothing_to_restore = not any((model_dir / name).exists()
                                     for name in files.CHECKPOINTS.values())
        if restore is None and self.previous and not self.overwrite and not nothing_to_restore:
            raise UserError(f"{model_dir}: already holds a run ({', '.join(self.previous[:3])}); "
                            f"pass --restore last to continue it, or --overwrite to start over "
                            f"(the old files move to {files.ARCHIVE}/)")
        if restore is None:
            return
        path = files.checkpoint_path(model_dir, restore)
        others = [name for name in files.CHECKPOINTS if name != restore
                  and files.checkpoint_path(model_dir, name).exists()]
        if restore in files.CHECKPOINTS and not path.exists() and others:
            raise UserError(f"{path}: not found (the run stopped before writing it), but "
                            f"{files.CHECKPOINTS[others[0]]} is there; pass --restore "
                            f"{others[0]} to continue from it")
        if restore in files.CHECKPOINTS and not path.exists() and self.previous:
            raise UserError(f"{path}: not found: the earlier run stopped before its first "
                            f"checkpoint; train without --restore (its files move to "
                            f"{files.ARCHIVE}/)")
        state = load_checkpoint(path)
        if state.get("task") != self.task.name:
            raise UserError(f"{path}: a checkpoint of task '{state.get('task')}', but "
                            f"{model_dir / files.PARAMS} trains task '{self.task.name}'; "
                            f"restore a checkpoint of the same task and architecture")
        _check_resumable(state, self.params, path)
        self.state = state

    def load_data(self) -> None:
        """The device, the data description (checked against the checkpoint's), the splits."""
        self.device = setup_torch(self.params, self.dist)
        if not self.data_dir.is_dir():
            raise UserError(f"{self.data_dir}: data folder not found; check --data-dir")
        self.data_info = self.task.describe_data(self.params, self.data_dir)
        if self.state is not None and self.state.get("data_info") != self.data_info:
            differ = _differing_keys(self.state.get("data_info"), self.data_info)
            raise UserError(f"{self.data_dir}: the data description ({differ}) differs from "
                            f"the one the checkpoint was trained with; restore with the same "
                            f"data dir (and, for word vectors, the same embeddings_file)")
        self.data = load_splits(self.task, self.params, self.data_dir, ("train", "val"),
                                self.data_info)
        # Refusals that need the data, made before anything in the model dir moves.
        self.train_loss = training_loss(self.task, self.params, self.data["train"],
                                        self.data_info, self.model_dir / files.PARAMS)
        if self.state is not None:
            steps = self.params.num_epochs * optimizer_steps_per_epoch(self.params,
                                                                       self.data["train"])
            _check_cycle_length(self.state, self.params, steps,
                                files.checkpoint_path(self.model_dir, self.restore))

    def fit(self) -> Trainer:
        """Train, with run.json saying how the attempt ended if it ends early."""
        archived = files.archive_outputs(self.model_dir) \
            if self.restore is None and self.previous else None
        self.record = RunRecord(self.model_dir if self.main else None, self.device,
                                self.params.seed, self.restore)
        try:
            with _out_of_memory_as_user_error(self.device), \
                    files.run_logging(self.model_dir / files.LOG if self.main else None,
                                      self.console and self.main):
                return self._fit_logged(archived)
        # When the disk is full, run.json cannot be written either: the first error is
        # the one the user needs to see, so a failing record write never replaces it.
        except StopRequested as exc:
            with contextlib.suppress(OSError):
                self.record.end("interrupted", str(exc))
            raise
        except KeyboardInterrupt:
            with contextlib.suppress(OSError):
                self.record.end("interrupted", "KeyboardInterrupt")
            raise
        except BaseException as exc:
            with contextlib.suppress(OSError):
                self.record.end("failed", str(exc) if isinstance(exc, UserError)
                                else f"{type(exc).__name__}: {exc}")
            raise

    def finish(self, trainer: Trainer) -> None:
        """run.json: finished, or interrupted when the run paused before its last epoch."""
        complete = trainer.epoch >= self.params.num_epochs or trainer.early_stopping.should_stop
        try:
            self.record.end("finished" if complete else "interrupted",
                            None if complete else f"paused after epoch {trainer.epoch}")
        except OSError as exc:  # the run itself is complete and saved: say so, do not fail it
            log.warning("%s", exc)

    # ---- inside fit ---------------------------------------------------------------------
    def _fit_logged(self, archived: Path | None) -> Trainer:
        self.params = params = self._settle_memory_format()
        self.trainer = trainer = build_trainer(self.task, params, self.device, self.data_info,
                                               self.dist, self.data["train"],
                                               self.train_loss)
        if self.stop is not None:
            trainer.stop = self.stop
        self._restore_or_start(trainer, archived)
        if self._nothing_to_do(trainer):
            return trainer
        trackers = EpochTrackers(self.model_dir, params, trainer.epoch,
                                 trainer.optimizer_steps) if self.main else None
        finished = False
        try:
            trainer.fit(self.data["train"], self.data["val"],
                        lambda result: self._epoch_end(result, trackers),
                        self.stop_after_epoch)
            finished = True
        except StopRequested as exc:
            if self.main and trainer.partial_epoch is not None:  # mid-epoch: save where it is
                save_checkpoint(trainer.state_dict(), self.model_dir / files.CHECKPOINTS["last"])
            log.info("%s; last.pt holds the state to resume from: rerun with --restore last",
                     exc)
            raise
        finally:
            if trackers is not None:
                trackers.close(best_val(trainer) if finished else None)
        es = trainer.early_stopping
        if es.should_stop:
            log.info("early stopping: no better val %s for %d epochs", params.metric,
                     es.patience)
        if es.best is None:
            log.warning("no epoch gave a finite val %s, so best.pt was not written; check the "
                        "data and lower learning_rate", params.metric)
        else:
            log.info("best val %s %.4f at epoch %d; files in %s", params.metric, es.best,
                     es.best_epoch, self.model_dir)
        return trainer

    def _settle_memory_format(self) -> Params:
        """channels_last: null becomes true or false before the model is built; a resumed
        run keeps the layout it was trained in, and processes of one DDP run agree."""
        params = self.params
        saved = (self.state or {}).get("params", {}).get("channels_last")
        if params.channels_last is not None:
            return params
        if isinstance(saved, bool):
            choice, why = saved, "as in the checkpoint being continued"
        elif self.dist.enabled:
            choice, why = True, "several processes (DDP): the layout is not timed"
        else:
            train = self.data["train"]
            first = torch.arange(min(params.batch_size, len(train)))
            batch = next(iterate_groups(train, [first], self.device))
            choice, why = choose_channels_last(self.task, params, self.device, self.data_info,
                                               batch)
        self.layout_note = f"channels_last: {str(choice).lower()} ({why})"  # logged once the
        return params.replace(channels_last=choice)  # checkpoint is known to fit

    def _restore_or_start(self, trainer: Trainer, archived: Path | None) -> None:
        """Load the checkpoint into the trainer (or start fresh) and log where the run is."""
        params, state = self.params, self.state
        if state is not None:
            path = files.checkpoint_path(self.model_dir, self.restore)
            check_compatible(trainer.model, state["model"], path)
            try:
                trainer.load_state_dict(state)
            except ValueError as exc:  # e.g. optimizer groups of another set of trainables
                raise UserError(f"{path}: its optimizer state does not fit this model's "
                                f"trainable weights ({exc}); restore with the params it was "
                                f"trained with (e.g. the same freeze_embeddings)") from None
            steps = params.num_epochs * optimizer_steps_per_epoch(params, self.data["train"])
            extend_schedules(trainer.scheduler, trainer.step_schedulers, params.num_epochs,
                             steps)
            if self.main:
                write_metrics_files(self.model_dir, trainer)
            _log_param_changes(state["params"], params)
            partial = trainer.partial_epoch
            log.info("==== resumed from %s after epoch %d%s (best %s %s) ====", self.restore,
                     trainer.epoch, f", mid-epoch {partial['epoch']} at step "
                     f"{partial['step']}" if partial else "", params.metric,
                     trainer.early_stopping.best)
        else:
            log.info("==== new run: task %s, %s ====", self.task.name, time.strftime("%c"))
            if archived is not None:
                log.info("previous run's files moved to %s", archived)
        dist = self.dist
        if self.auto_note:
            log.info("%s", self.auto_note)
        if self.layout_note:
            log.info("%s", self.layout_note)
        log.info("data: %s; train %d, val %d examples; device %s, %d threads%s",
                 self.data_dir, len(self.data["train"]), len(self.data["val"]), self.device,
                 torch.get_num_threads(), f"; {dist.world_size} processes (DDP), global "
                 f"batch {params.batch_size}" if dist.enabled else "")
        if params.compile != "none":
            log.info("compile %s: torch.compile traces and builds the model during the first "
                     "steps, which may take a minute or more before the progress bar moves",
                     params.compile)
        if self.main:
            write_json(self.model_dir / files.RESOLVED_PARAMS, params.to_dict())

    def _nothing_to_do(self, trainer: Trainer) -> bool:
        params = self.params
        if trainer.early_stopping.should_stop:
            log.info("nothing to do: early stopping fired after epoch %d (%d epochs without "
                     "a better val %s); raise early_stopping_patience or set it to null to "
                     "train further", trainer.epoch, trainer.early_stopping.bad_epochs,
                     params.metric)
            return True
        if trainer.epoch >= params.num_epochs:
            log.info("nothing to do: %d of %d epochs done; raise num_epochs (e.g. --set "
                     "num_epochs=%d) to train further", trainer.epoch, params.num_epochs,
                     params.num_epochs + 10)
            return True
        return False

    def _epoch_end(self, result: EpochResult, trackers: EpochTrackers | None) -> None:
        if not self.main:
            return
        trainer = self.trainer
        _save_epoch(self.model_dir, trainer, result)
        log.info("epoch %d/%d  train: %s | val: %s | lr %.2e | %.1fs%s", result.epoch,
                 self.params.num_epochs, format_metrics(result.train),
                 format_metrics(result.val), result.lr, result.seconds,
                 "  *best" if result.improved else "")
        trackers.epoch_end(result, trainer.history)


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


def best_val(trainer: Trainer) -> dict[str, float]:
    """The val metrics of the best epoch (empty before there is one)."""
    best = trainer.early_stopping.best_epoch
    if best is None or best > len(trainer.history):
        return {}
    return {k[4:]: v for k, v in trainer.history[best - 1].items() if k.startswith("val_")}


def _check_resumable(state: Mapping[str, Any], new: Params, path: Path) -> None:
    # A key the checkpoint's params lack is one added since: it had its default then.
    old = {k: field.default for k, field in COMMON_SCHEMA.items()} | state["params"]
    # A checkpoint taken mid-epoch resumes at a batch position, which needs the same
    # batches, in the same accumulation groups.
    fixed = RESUME_FIXED_KEYS + (("batch_size", "seed", "accumulation_steps")
                                 if state.get("partial_epoch") else ())
    if new.scheduler == "onecycle":  # its rise and fall are laid over the whole run
        fixed += ("num_epochs",)
    if moves_per_step(new):
        fixed += ("batch_size", "accumulation_steps")  # they set the count of steps
    changed = [f"{k} {old.get(k)!r} -> {new[k]!r}" for k in dict.fromkeys(fixed)
               if old.get(k) != new[k]]
    if changed:
        raise UserError(f"{path}: --restore continues a run with its optimizer and schedule, "
                        f"but params changed {'; '.join(changed)}; set them back, or start a "
                        f"new run from these weights in another model dir")


def _differing_keys(saved: Any, now: Any, prefix: str = "") -> str:
    """The dotted keys at which two data descriptions differ, for a message a user can act
    on ("embeddings.sha256" says the vectors file changed)."""
    if not isinstance(saved, dict) or not isinstance(now, dict):
        return prefix.rstrip(".") or "all of it"
    keys = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    parts = [_differing_keys(saved.get(k), now.get(k), f"{prefix}{k}.") for k in keys[:4]]
    return ", ".join(parts) or "all of it"


def training_loss(task: Task, params: Params, train: Any, data_info: DataInfo | None,
                  params_file: Path) -> Callable[[Any, Any], Any]:
    """The task's training loss; params it refuses are named with their file."""
    try:
        return task.training_loss(params, train, data_info)
    except ParamsError as exc:
        raise UserError(f"{params_file}: {exc}") from None


def _check_cycle_length(state: Mapping[str, Any], params: Params, steps: int,
                        path: Path) -> None:
    """A one-cycle schedule spans the run's steps; other data would change their count."""
    saved = (state.get("step_schedulers") or [{}])[0].get("total_steps")
    if params.scheduler == "onecycle" and saved is not None and saved != steps:
        raise UserError(f"{path}: its onecycle schedule spans {saved} optimizer steps, but "
                        f"this data and these params make {steps}; restore with the data "
                        f"dir it was trained on, or start a new run")


def _log_param_changes(old: Mapping[str, Any], new: Params) -> None:
    changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    if changed:
        log.info("params changed since the checkpoint: %s", "; ".join(changed))
