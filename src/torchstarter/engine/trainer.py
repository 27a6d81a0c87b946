"""The training engine: one epoch is a train pass then a val pass. Task-agnostic.

Everything task-specific arrives through the Task (model, loss, metrics, augment);
everything about files arrives through the `on_epoch_end` callback of fit().
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from torchstarter.config import Params
from torchstarter.engine.batching import (
    batch_size_of,
    epoch_order,
    iterate_batches,
    place,
)
from torchstarter.engine.early_stopping import EarlyStopping
from torchstarter.engine.interrupt import GracefulStop, StopRequested
from torchstarter.engine.metrics import MetricTotals
from torchstarter.engine.optim import build_optimizer, build_scheduler
from torchstarter.engine.rng import AUGMENT_STREAM, epoch_generator, get_rng_state, set_rng_state
from torchstarter.errors import UserError
from torchstarter.tasks.base import Task

log = logging.getLogger("torchstarter")


@dataclass
class EpochResult:
    epoch: int
    train: dict[str, float]
    val: dict[str, float]
    lr: float
    seconds: float
    improved: bool
    train_seconds: float = float("nan")
    train_examples: int = 0

    def as_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"epoch": self.epoch}
        row.update({f"train_{k}": v for k, v in self.train.items()})
        row.update({f"val_{k}": v for k, v in self.val.items()})
        row.update({"lr": self.lr, "seconds": round(self.seconds, 3)})
        return row


class Trainer:
    def __init__(self, task: Task, params: Params, device: torch.device,
                 data_info: dict[str, Any] | None = None):
        self.task, self.params, self.device = task, params, device
        self.data_info = data_info
        self.model = task.make_model(params, data_info).to(device)
        self.channels_last = params.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(params, self.model)
        self.scheduler = build_scheduler(params, self.optimizer, params.metric_mode)
        self.early_stopping = EarlyStopping(params.metric_mode, params.early_stopping_patience)
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []
        self.use_bf16 = params.precision == "bf16"
        # Where an interrupted epoch stopped: its step, metric sums and augmentation RNG.
        self.partial_epoch: dict[str, Any] | None = None
        self.stop = GracefulStop()  # the run installs its signal handlers on this

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "epoch": self.epoch,
            "early_stopping": self.early_stopping.state_dict(),
            "history": self.history,
            "rng": get_rng_state(),
            "params": self.params.to_dict(),
            "task": self.task.name,
            "data_info": self.data_info,
            "partial_epoch": self.partial_epoch,
        }

    def load_state_dict(self, state: dict[str, Any], weights_only: bool = False) -> None:
        self.model.load_state_dict(state["model"])
        if weights_only:
            return
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self.early_stopping.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        self.partial_epoch = state.get("partial_epoch")
        set_rng_state(state["rng"])

    # ---- passes ------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.use_bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _prepare(self, inputs: Any) -> Any:
        if self.channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def train_epoch(self, data: Any, epoch: int) -> dict[str, float]:
        """One pass over `data` in the order fixed by (seed, epoch); exact epoch metrics."""
        p = self.params
        data = place(data, self.device)
        self.model.train()
        order = epoch_order(len(data), p.seed, epoch, shuffle=True).to(_index_device(data))
        augment_gen = epoch_generator(p.seed, epoch, AUGMENT_STREAM, self.device)
        totals = MetricTotals(self.task.metrics, self.device)
        done = 0  # steps of this epoch already taken before an interruption
        if self.partial_epoch is not None and self.partial_epoch["epoch"] == epoch:
            done = self.partial_epoch["step"]
            totals.load_state_dict(self.partial_epoch["totals"])
            augment_gen.set_state(self.partial_epoch["augment_rng"])
        self.partial_epoch = None
        bar = tqdm(total=len(data), initial=totals.examples, desc=f"epoch {epoch}/{p.num_epochs}",
                   unit="samples", leave=False, disable=None, dynamic_ncols=True)
        last_shown = time.monotonic()
        check_every_step = self.device.type == "cpu"
        batches = iterate_batches(data, order, p.batch_size, self.device, p.num_workers, done)
        for step, (inputs, labels) in enumerate(batches, start=done + 1):
            if self.task.augment is not None:
                inputs = self.task.augment(p, inputs, augment_gen)
            inputs = self._prepare(inputs)
            with self._autocast():
                outputs = self.model(inputs)
                loss, count = self.task.loss(outputs, labels)
            # On the CPU the check is free; on a GPU it waits, so it runs every summary step.
            if (check_every_step or step % p.save_summary_steps == 0) and \
                    not bool(torch.isfinite(loss.detach())):
                raise UserError(
                    f"loss is {float(loss.detach()):g} at epoch {epoch}, step {step}; stopped "
                    f"before updating, so last.pt (end of epoch {epoch - 1}) is the last good "
                    f"checkpoint; lower learning_rate or set grad_clip_norm")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if p.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip_norm)
            with torch.no_grad():  # before the step: metrics of the weights that made outputs
                totals.add(loss.detach(), count, outputs, labels, batch_size_of(labels))
            self.optimizer.step()
            bar.update(batch_size_of(labels))
            if step % p.save_summary_steps == 0:
                log.debug("epoch %d step %d: running loss %.4f", epoch, step,
                          totals.running_loss())
            if not bar.disable and time.monotonic() - last_shown > 0.5:
                bar.set_postfix(loss=f"{totals.running_loss():.4f}", refresh=False)
                last_shown = time.monotonic()
            if self.stop:
                bar.close()
                self.partial_epoch = {"epoch": epoch, "step": step,
                                      "totals": totals.state_dict(),
                                      "augment_rng": augment_gen.get_state()}
                raise StopRequested(self.stop.signum, f"at epoch {epoch}, step {step}")
        bar.close()
        return totals.compute()

    @torch.inference_mode()
    def evaluate(self, data: Any) -> dict[str, float]:
        data = place(data, self.device)
        self.model.eval()
        totals = MetricTotals(self.task.metrics, self.device)
        order = torch.arange(len(data), device=_index_device(data))
        for inputs, labels in iterate_batches(data, order, self.params.batch_size, self.device,
                                              self.params.num_workers):
            with self._autocast():
                outputs = self.model(self._prepare(inputs))
                loss, count = self.task.loss(outputs, labels)
            totals.add(loss, count, outputs, labels, batch_size_of(labels))
        return totals.compute()

    # ---- the run -----------------------------------------------------------------------
    def fit(self, train_data: Any, val_data: Any,
            on_epoch_end: Callable[[EpochResult], None] | None = None,
            stop_after_epoch: int | None = None) -> list[EpochResult]:
        """Train until num_epochs, early stopping, or `stop_after_epoch` (a planned pause)."""
        p = self.params
        train_data, val_data = place(train_data, self.device), place(val_data, self.device)
        results = []
        while self.epoch < p.num_epochs and not self.early_stopping.should_stop:
            if stop_after_epoch is not None and self.epoch >= stop_after_epoch:
                break
            epoch = self.epoch + 1
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_metrics = self.train_epoch(train_data, epoch)
            train_seconds = time.perf_counter() - started
            val_metrics = self.evaluate(val_data)
            value = val_metrics[p.metric]
            self._step_scheduler(value)
            self.epoch = epoch
            improved = self.early_stopping.update(value, epoch)
            result = EpochResult(epoch, train_metrics, val_metrics, lr,
                                 time.perf_counter() - started, improved, train_seconds,
                                 len(train_data))
            self.history.append(result.as_row())
            if on_epoch_end is not None:
                on_epoch_end(result)
            results.append(result)
            if self.stop and self.epoch < p.num_epochs and not self.early_stopping.should_stop:
                raise StopRequested(self.stop.signum, f"after epoch {epoch}")
        return results

    def _step_scheduler(self, value: float) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(value)
        else:
            self.scheduler.step()


def _index_device(data: Any) -> torch.device:
    """Where batch indices should live: beside in-memory tensors, else on the CPU."""
    return getattr(data, "device", None) or torch.device("cpu")
