"""What a run shows while it trains: TensorBoard scalars and the learning-curve plot.

Both are fed after every epoch from the same EpochResult that goes into history.json.
The plot costs about 65 ms to draw, 5% of a SIGNS epoch on 2 cores: it is redrawn once
PLOT_EVERY_S have passed since the last drawing, and always when the run ends (or
stops), so a long run's picture is never more than that old and a short run pays once.
Neither may cost a run its results: a failure is logged once and the tracker turns
itself off.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from torchstarter.config import Params
from torchstarter.engine.optim import moves_per_step
from torchstarter.engine.trainer import EpochResult
from torchstarter.experiment.files import LEARNING_CURVE, TENSORBOARD
from torchstarter.experiment.learning_curve import learning_curve

log = logging.getLogger("torchstarter")

PLOT_EVERY_S = 30.0


class EpochTrackers:
    def __init__(self, model_dir: Path, params: Params, epochs_done: int, steps_done: int = 0):
        self.model_dir = Path(model_dir)
        self.params = params
        self.writer: Any = None
        self.step_writer: Any = None  # the learning rate per optimizer step, when it moves so
        if params.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                log.warning("TensorBoard logging is off: %s (pip install tensorboard)", exc)
            else:
                # purge_step hides events an interrupted earlier attempt logged past the
                # checkpoint we resume from, so curves never show an epoch twice.
                self.writer = SummaryWriter(log_dir=str(self.model_dir / TENSORBOARD),
                                            purge_step=epochs_done + 1)
                # Its own folder: purging counts optimizer steps there, not epochs.
                self.step_writer = SummaryWriter(
                    log_dir=str(self.model_dir / TENSORBOARD / "per_step"),
                    purge_step=steps_done + 1) if moves_per_step(params) else None
        self.plots = params.plots
        self.drawn_at = time.monotonic()
        self.pending: list[dict[str, Any]] | None = None  # history not drawn yet

    def epoch_end(self, result: EpochResult, history: list[dict[str, Any]]) -> None:
        if self.writer is not None:
            try:
                self._scalars(result)
            except Exception as exc:  # noqa: BLE001 - logging must never end a run
                log.warning("TensorBoard logging is off after an error: %s", exc)
                self.writer = None
        self.pending = list(history)
        if time.monotonic() - self.drawn_at >= PLOT_EVERY_S:
            self._draw()

    def _draw(self) -> None:
        if self.plots and self.pending is not None:
            try:
                learning_curve(self.pending, self.params.metric,
                               self.model_dir / LEARNING_CURVE, title=self.model_dir.name,
                               mode=self.params.metric_mode)
            except Exception as exc:  # noqa: BLE001 - a plot must never end a run
                log.warning("learning-curve plot is off after an error: %s", exc)
                self.plots = False
        self.pending, self.drawn_at = None, time.monotonic()

    def _scalars(self, result: EpochResult) -> None:
        step = result.epoch
        for split, metrics in (("train", result.train), ("val", result.val)):
            for name, value in metrics.items():
                self.writer.add_scalar(f"{name}/{split}", value, step)
        self.writer.add_scalar("lr", result.lr, step)
        if result.train_examples and result.train_seconds > 0:  # False for NaN too
            self.writer.add_scalar("samples_per_s/train",
                                   result.train_examples / result.train_seconds, step)
        self.writer.add_scalar("seconds/epoch", result.seconds, step)
        self.writer.flush()
        if self.step_writer is not None and result.step_lrs:
            for optimizer_step, lr in result.step_lrs:
                self.step_writer.add_scalar("lr", lr, optimizer_step)
            self.step_writer.flush()

    def close(self, final: dict[str, float] | None = None) -> None:
        """final: a finished run's best val metrics, recorded with its params for
        TensorBoard's HPARAMS tab, where runs are compared setting by setting."""
        self._draw()
        if final and self.writer is not None:
            try:
                self.writer.add_hparams(hparams(self.params.to_dict()),
                                        {f"hparam/best_val_{k}": v for k, v in final.items()},
                                        run_name=".")
            except Exception as exc:  # noqa: BLE001 - logging must never end a run
                log.warning("TensorBoard hparams not written: %s", exc)
        for writer in (self.writer, self.step_writer):
            if writer is not None:
                writer.close()
        self.writer = self.step_writer = None


def hparams(params: dict[str, Any]) -> dict[str, Any]:
    """Params as TensorBoard takes them: numbers, strings and booleans as they are,
    anything else (null, lists) as its JSON text."""
    return {k: v if isinstance(v, bool | int | float | str) else json.dumps(v)
            for k, v in params.items()}
