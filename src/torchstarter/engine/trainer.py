"""The training loop: one epoch is a train pass then a val pass. Task-agnostic.

The Trainer is handed its parts (model, optimizer, scheduler, loss scaler, device,
distribution setup); engine/build.py makes them from params. What is task-specific
arrives through the Task (loss, metrics, augment); what is about files arrives through
the `on_epoch_end` callback of fit(). The whole step is Trainer.train_step.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.batching import (
    batch_groups,
    batch_size_of,
    epoch_order,
    iterate_groups,
    place,
)
from torchstarter.engine.distributed import SINGLE, Distributed
from torchstarter.engine.early_stopping import EarlyStopping
from torchstarter.engine.ema import WeightAverage
from torchstarter.engine.evaluation import evaluate
from torchstarter.engine.forward import autocast_for, loss_scaler, prepare
from torchstarter.engine.interrupt import GracefulStop, StopRequested
from torchstarter.engine.metrics import MetricTotals, as_float64
from torchstarter.engine.progress import PassProgress
from torchstarter.engine.rng import (
    AUGMENT_STREAM,
    LOADER_STREAM,
    RANK_STREAM,
    derived_seed,
    epoch_generator,
    get_rng_state,
    seed_everything,
    set_rng_state,
)
from torchstarter.engine.task import DataInfo, Loss, Task
from torchstarter.engine.threads import ThreadGovernor
from torchstarter.errors import UserError

log = logging.getLogger("torchstarter")
Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: training stopped before the weights took it."""


@dataclass(frozen=True)
class Micro:
    """Where a batch sits in its accumulation group: the first clears the gradients, the
    last takes the optimizer step (and, under DDP, alone syncs gradients)."""

    first: bool = True
    last: bool = True


WHOLE = Micro()  # a batch that is a whole group: what every step is without accumulation


def micro_at(step: int, k: int, steps: int) -> Micro:
    """Batch `step` (from 1) of an epoch of `steps` batches, in groups of k; the last group
    holds what is left."""
    return WHOLE if k == 1 else Micro(step % k == 1, step % k == 0 or step == steps)


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
    step_lrs: list[tuple[int, float]] | None = None  # (optimizer step, lr) when it moves per step

    def as_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"epoch": self.epoch}
        row.update({f"train_{k}": v for k, v in self.train.items()})
        row.update({f"val_{k}": v for k, v in self.val.items()})
        row.update({"lr": self.lr, "seconds": round(self.seconds, 3)})
        return row


class Trainer:
    def __init__(self, task: Task, params: Params, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: Scheduler | None = None, *,
                 device: torch.device, dist: Distributed = SINGLE,
                 train_model: torch.nn.Module | None = None,
                 scaler: torch.amp.GradScaler | None = None,
                 data_info: DataInfo | None = None, threads: ThreadGovernor | None = None,
                 train_loss: Callable[[Any, Any], Loss] | None = None,
                 step_schedulers: list[torch.optim.lr_scheduler.LRScheduler] | None = None,
                 ema: WeightAverage | None = None):
        self.task, self.params, self.device, self.dist = task, params, device, dist
        self.model = model  # the trained weights (validated and saved unless EMA is on)
        self.train_model = train_model or model  # what the step calls (DDP, compiled)
        self.train_loss = train_loss or task.loss  # validation always uses task.loss
        self.optimizer, self.scheduler = optimizer, scheduler  # scheduler: once per epoch
        self.step_schedulers = step_schedulers or []  # after every optimizer step
        self.ema = ema  # the averaged weights, which then are validated and saved
        self.accumulating = params.accumulation_steps > 1
        self.optimizer_steps = 0  # over the whole run
        self.step_lrs: list[tuple[int, float]] = []  # this epoch's, with per-step schedules
        self._group_count: Any = 0  # what the current accumulation group's losses average
        self._group_unit: torch.Tensor | None = None  # the count of its first micro-batch
        self.epoch_lr = 0.0  # the rate the current epoch started with (history's "lr")
        self.scaler = scaler or loss_scaler(device, params.precision)  # disabled but fp16
        self.autocast = autocast_for(device, params.precision)  # disabled for fp32
        self.data_info = data_info  # saved in checkpoints: the model is built for it
        self.early_stopping = EarlyStopping(params.metric_mode, params.early_stopping_patience)
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []
        # Where an interrupted epoch stopped: its step, metric sums and augmentation RNG.
        self.partial_epoch: dict[str, Any] | None = None
        self.examples_this_call = 0  # trained by the last train_epoch (for samples/s)
        # Steps between NaN checks: free on the CPU, but on a GPU each one waits for it.
        self.check_every = 1 if device.type == "cpu" else params.save_summary_steps
        self.stop = GracefulStop()  # the run installs its signal handlers on this
        # CPU threads follow the load unless params pin them (engine/threads.py says why).
        self.threads = threads or ThreadGovernor(params.num_threads, device.type == "cpu")

    # ---- the step -----------------------------------------------------------------------
    def train_step(self, inputs: Any, labels: Any, totals: MetricTotals,
                   augment_gen: torch.Generator, placeholder: bool, epoch: int, step: int,
                   micro: Micro = WHOLE) -> bool:
        """Forward and backward of one batch, its loss and metrics into `totals`, and the
        optimizer step when the batch ends its accumulation group (always, without one).

        Returns whether a stop was asked for (on any process). A placeholder batch (a
        process without examples in this global batch) only joins DDP's gradient sum.
        """
        inputs = self.task.augment(self.params, inputs, augment_gen)
        with self._gradient_sync(micro.last):
            with self.autocast():
                outputs = self.train_model(prepare(inputs, self.params.channels_last))
                loss, count = self.train_loss(outputs, labels)
            check = step % self.check_every == 0
            weighted, mean_loss, stop = self._share_step(loss, count, placeholder, check)
            if check and not bool(torch.isfinite(mean_loss)):
                raise self._not_finite(float(mean_loss), epoch, step)
            if micro.first:
                self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(weighted).backward()
        if not placeholder:
            with torch.no_grad():  # before the step: metrics of the weights that made them
                totals.add(loss.detach(), count, outputs, labels, batch_size_of(labels))
        if micro.last:
            self._optimizer_step()
        return stop

    def _optimizer_step(self) -> None:
        if self.accumulating:  # the summed gradients become those of the group's mean loss
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            torch._foreach_mul_(grads, self._group_scale())
        if self.params.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.params.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer_steps += 1
        if self.step_schedulers:  # the rate this step used, before the schedule moves it
            self.step_lrs.append((self.optimizer_steps, self.optimizer.param_groups[0]["lr"]))
        for scheduler in self.step_schedulers:
            scheduler.step()
        if self.ema is not None:
            self.ema.update()

    def _accumulate(self, count: Any) -> torch.Tensor:
        """The weight of a micro-batch's mean loss in its group's sum: its count, over the
        count of the group's first micro-batch, so that fp16 gradients keep their scale."""
        count = as_float64(count, self.device)
        if self._group_unit is None:
            self._group_unit = count.clamp(min=1e-12)
        self._group_count = self._group_count + count
        return count / self._group_unit

    def _group_scale(self) -> torch.Tensor:
        """unit / (what the group's losses average); DDP then averages over processes, so
        under DDP the factor is world_size x unit / (the count over every process)."""
        scale = self.dist.world_size * self._group_unit / self._group_count
        self._group_count, self._group_unit = 0, None
        return scale.float()

    def _gradient_sync(self, wanted: bool) -> contextlib.AbstractContextManager:
        """DDP's gradient all-reduce is needed on a group's last batch only."""
        if wanted or not self.dist.enabled:
            return contextlib.nullcontext()
        module = getattr(self.train_model, "_orig_mod", self.train_model)  # under compile
        return module.no_sync()

    # ---- a pass -------------------------------------------------------------------------
    def train_epoch(self, data: Any, epoch: int) -> dict[str, float]:
        """One pass over `data` in the order fixed by (seed, epoch); exact epoch metrics."""
        p, dist = self.params, self.dist
        data = place(data, self.device)
        self.train_model.train()
        order = epoch_order(len(data), p.seed, epoch, shuffle=True)  # indices stay on the host
        augment_gen = epoch_generator(p.seed, epoch, AUGMENT_STREAM + 1000 * dist.rank,
                                      self.device)
        totals = MetricTotals(self.task.metrics, self.device, dist.all_reduce_sum)
        global_groups = batch_groups(data, order, p.batch_size)
        done = self._resume_position(epoch, totals, augment_gen, global_groups)
        k, last_step = p.accumulation_steps, len(global_groups)
        self.examples_this_call = -totals.examples
        groups = [dist.shard(g) for g in global_groups]
        batches = iterate_groups(data, [g for g, _ in groups], self.device, p.num_workers, done,
                                 epoch_generator(p.seed, epoch, LOADER_STREAM))
        progress = PassProgress(len(data), totals.examples, epoch, p.num_epochs, dist.is_main,
                                totals.running_loss, p.save_summary_steps)
        stop = False
        try:
            for step, (inputs, labels) in enumerate(batches, start=done + 1):
                placeholder = groups[step - 1][1]
                micro = micro_at(step, k, last_step)
                stop = self.train_step(inputs, labels, totals, augment_gen, placeholder, epoch,
                                       step, micro) or stop
                progress.step(step, 0 if placeholder else batch_size_of(labels))
                self.threads.tick()
                if stop and micro.last:  # a pause keeps no half-summed gradients
                    self._pause(epoch, step, totals, augment_gen, global_groups)
        finally:
            progress.close()
        self.examples_this_call += totals.examples
        return totals.compute()

    def evaluate(self, data: Any) -> dict[str, float]:
        return evaluate(self.weights(), data, self.task, self.params, self.device, self.dist)

    def weights(self) -> torch.nn.Module:
        """The model that is validated and saved: the average when EMA is on."""
        return self.model if self.ema is None else self.ema.averaged()

    def _share_step(self, loss: torch.Tensor, count: Any, placeholder: bool, check: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(loss to differentiate, mean loss of the global batch, stop requested anywhere).

        One process: all three are as they are. Several: one all-reduce shares the loss
        sum, the count and the stop flag, so every process checks the same numbers and
        stops at the same step.
        """
        if not self.dist.enabled:
            if self.accumulating:  # summed now, divided by the group's count at its end
                return loss * self._accumulate(count).to(loss.dtype), loss.detach(), \
                    bool(self.stop)
            return loss, loss.detach(), bool(self.stop)
        n = as_float64(count, self.device) * (not placeholder)
        shared = torch.stack([loss.detach().double() * n, n,
                              as_float64(float(bool(self.stop)), self.device)])
        self.dist.all_reduce_sum(shared)
        stop = bool(check and shared[2] > 0)
        if self.accumulating:  # this process's share, in units of the group's first batch
            self._accumulate(shared[1])  # the group counts every process's examples
            return loss * (n / self._group_unit).to(loss.dtype), shared[0] / shared[1], stop
        # DDP averages gradients over processes; this weight makes that average the
        # gradient of the global batch's mean loss.
        weight = (n * self.dist.world_size / shared[1]).to(loss.dtype)
        return loss * weight, shared[0] / shared[1], stop

    def _not_finite(self, loss: float, epoch: int, step: int) -> NonFiniteLoss:
        where = "" if self.check_every == 1 else \
            " (a GPU checks every save_summary_steps steps)"
        kept = f"last.pt (end of epoch {self.epoch}) is the last good checkpoint" \
            if self.epoch else "no epoch had finished, so no checkpoint was written"
        return NonFiniteLoss(f"loss is {loss:g} at epoch {epoch}, step {step}{where}; stopped "
                         f"before updating: {kept}; lower learning_rate, set grad_clip_norm, "
                         f"or look for NaN or infinite values in the data")

    def _resume_position(self, epoch: int, totals: MetricTotals, augment_gen: torch.Generator,
                         groups: list[torch.Tensor]) -> int:
        """Steps of this epoch already taken before an interruption (0 for a fresh epoch)."""
        partial, self.partial_epoch = self.partial_epoch, None
        if partial is None or partial["epoch"] != epoch:
            return 0
        if partial.get("batches") != _fingerprint(groups):
            raise UserError(
                f"the checkpoint stopped at step {partial['step']} of epoch {epoch}, but this "
                f"epoch's batches are not the ones it was cut from (params that group "
                f"examples, such as bucket_by_length, or the data changed); restore with the "
                f"same params and data dir")
        if self.dist.is_main:  # the saved sums are already the sums over every process
            totals.load_state_dict(partial["totals"])
            try:
                augment_gen.set_state(partial["augment_rng"])
            except RuntimeError:  # a CUDA generator's state does not fit a CPU one, or back
                log.warning("the checkpoint stopped in epoch %d on another kind of device; "
                            "the rest of that epoch draws augmentation from a new stream, so "
                            "it will not repeat the interrupted run exactly", epoch)
                augment_gen.manual_seed(derived_seed(self.params.seed, epoch,
                                                     AUGMENT_STREAM + partial["step"]))
        return partial["step"]

    def _pause(self, epoch: int, step: int, totals: MetricTotals,
               augment_gen: torch.Generator, groups: list[torch.Tensor]) -> None:
        self.partial_epoch = {"epoch": epoch, "step": step, "totals": totals.reduced_state(),
                              "augment_rng": augment_gen.get_state(),
                              "batches": _fingerprint(groups), "lr": self.epoch_lr,
                              "step_lrs": list(self.step_lrs)}
        raise StopRequested(self._signum(), f"at epoch {epoch}, step {step}")

    def _signum(self) -> int:
        """The signal this process got, or SIGTERM when only another process got one."""
        return self.stop.signum if self.stop.signum is not None else signal.SIGTERM

    # ---- the run ------------------------------------------------------------------------
    def fit(self, train_data: Any, val_data: Any,
            on_epoch_end: Callable[[EpochResult], None] | None = None,
            stop_after_epoch: int | None = None) -> list[EpochResult]:
        """Train until num_epochs, early stopping, or `stop_after_epoch` (a planned pause)."""
        p = self.params
        train_data, val_data = place(train_data, self.device), place(val_data, self.device)
        self._warn_long_accumulation(train_data)
        results = []
        while self.epoch < p.num_epochs and not self.early_stopping.should_stop:
            if stop_after_epoch is not None and self.epoch >= stop_after_epoch:
                break
            epoch = self.epoch + 1
            started = time.perf_counter()
            partial = self.partial_epoch or {}  # an epoch resumed mid-way started earlier
            lr = partial.get("lr", self.optimizer.param_groups[0]["lr"]) \
                if partial.get("epoch") == epoch else self.optimizer.param_groups[0]["lr"]
            self.epoch_lr = lr
            if partial.get("epoch") == epoch:  # the rates of the steps before the pause
                self.step_lrs = [tuple(x) for x in partial.get("step_lrs", [])]
            train_metrics = self.train_epoch(train_data, epoch)
            train_seconds = time.perf_counter() - started
            val_metrics = self.evaluate(val_data)
            value = val_metrics[p.metric]
            self._step_scheduler(value)
            self.epoch = epoch
            improved = self.early_stopping.update(value, epoch)
            result = EpochResult(epoch, train_metrics, val_metrics, lr,
                                 time.perf_counter() - started, improved, train_seconds,
                                 self.examples_this_call, self.step_lrs)
            self.step_lrs = []
            self.history.append(result.as_row())
            if on_epoch_end is not None:
                on_epoch_end(result)
            results.append(result)
            if self._stop_everywhere() and self.epoch < p.num_epochs and \
                    not self.early_stopping.should_stop:
                raise StopRequested(self._signum(), f"after epoch {epoch}")
        return results

    def _warn_long_accumulation(self, train_data: Any) -> None:
        k = self.params.accumulation_steps
        batches = -(-len(train_data) // self.params.batch_size)
        if k > batches:
            log.warning("accumulation_steps %d is more than the %d batches of an epoch: each "
                        "epoch makes one optimizer step, over all its batches", k, batches)

    def _stop_everywhere(self) -> bool:
        if not self.dist.enabled:
            return bool(self.stop)
        flag = as_float64(float(bool(self.stop)), self.device).view(1)
        return bool(self.dist.all_reduce_sum(flag) > 0)

    def _step_scheduler(self, value: float) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(value)
        else:
            self.scheduler.step()

    # ---- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a restore needs to continue exactly: each stateful part's own state."""
        state = {
            "model": self.weights().state_dict(),  # what evaluate, predict and export load
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "step_schedulers": [s.state_dict() for s in self.step_schedulers],
            "step_scheduler_kinds": [type(s).__name__ for s in self.step_schedulers],
            "optimizer_steps": self.optimizer_steps,
            "epoch": self.epoch,
            "early_stopping": self.early_stopping.state_dict(),
            "history": self.history,
            "rng": get_rng_state(),
            "params": self.params.to_dict(),
            "task": self.task.name,
            "data_info": self.data_info,
            "partial_epoch": self.partial_epoch,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
        }
        if self.ema is not None:  # the average is "model"; training continues from these
            state.update(trained_model=self.model.state_dict(), ema=self.ema.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        trained = state.get("trained_model")  # present when the run had EMA on
        self.model.load_state_dict(state["model"] if trained is None else trained)
        if self.ema is not None and trained is not None:
            self.ema.load_state_dict(state["ema"], state["model"])
        elif self.ema is not None:
            self.ema.restart()
            log.info("EMA: the checkpoint holds no averaged weights; the average starts from "
                     "its weights now")
        elif trained is not None:
            log.info("EMA is off now: training continues from the checkpoint's trained "
                     "(not averaged) weights")
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        saved = state.get("step_schedulers") or []
        kinds = [type(s).__name__ for s in self.step_schedulers]
        if len(saved) != len(kinds) or state.get("step_scheduler_kinds", kinds) != kinds:
            raise UserError(f"the checkpoint's per-step schedule "
                            f"({', '.join(state.get('step_scheduler_kinds', [])) or 'none'}) "
                            f"is not the one these params make ({', '.join(kinds) or 'none'}); "
                            f"restore with the params it was trained with")
        for scheduler, own in zip(self.step_schedulers, saved, strict=True):
            scheduler.load_state_dict(own)
        self.optimizer_steps = state.get("optimizer_steps", 0)
        self.epoch = state["epoch"]
        self.early_stopping.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        self.partial_epoch = state.get("partial_epoch")
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.dist.rank == 0:
            set_rng_state(state["rng"])
        else:  # the checkpoint holds rank 0's generators; the others get a fresh stream
            rank_stream = RANK_STREAM + self.dist.rank
            seed_everything(derived_seed(self.params.seed, self.epoch, rank_stream))


def _fingerprint(groups: list[torch.Tensor]) -> str:
    """Identifies an epoch's batches, so a mid-epoch resume can prove it skips the same ones."""
    digest = hashlib.sha256()
    for group in groups:
        digest.update(group.cpu().numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]
