"""`lr-find`: a short training sweep that suggests a learning rate for an experiment.

The rate grows exponentially from start_lr to end_lr over at most `steps` optimizer
steps of a freshly built model, taken by the Trainer's own step (so accumulation,
precision and the task's training loss are those of `train`). The loss of each step is
smoothed by an exponential average with bias correction (beta 0.98, as fastai does) and
the sweep stops early once the smoothed loss exceeds `divergence` times its best.

The suggestion is the rate at the steepest descent of the smoothed loss against
log10(rate), leaving out the first 10 and the last point (the start is noisy and the
end is where it diverges). Nothing of the sweep is kept but lr_find.json and
lr_find.png: the model dir gets no checkpoint, and the process's random state is put
back, so a `train` afterwards starts exactly as it would have.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torchstarter.engine.batching import batch_groups, epoch_order, iterate_groups, place
from torchstarter.engine.build import build_trainer
from torchstarter.engine.metrics import MetricTotals
from torchstarter.engine.rng import AUGMENT_STREAM, epoch_generator, get_rng_state, set_rng_state
from torchstarter.engine.trainer import NonFiniteLoss, micro_at
from torchstarter.errors import UserError
from torchstarter.experiment import files
from torchstarter.experiment.lock import run_lock
from torchstarter.experiment.training import load_splits, setup_torch, training_loss
from torchstarter.tasks.registry import load_experiment
from torchstarter.utils.atomic import write_json

log = logging.getLogger("torchstarter")

RESULT = "lr_find.json"
PICTURE = "lr_find.png"
SMOOTHING = 0.98
SKIP_START, SKIP_END = 10, 1
RULE = ("steepest descent of the bias-corrected exponentially smoothed loss (beta 0.98) "
        "against log10(lr), leaving out the first 10 and the last point")


@dataclass
class Sweep:
    start_lr: float
    end_lr: float
    steps: int
    divergence: float
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    stopped: str = "all steps taken"
    suggestion: float | None = None
    rule: str = RULE

    def rate(self, i: int) -> float:
        return self.start_lr * (self.end_lr / self.start_lr) ** (i / max(self.steps - 1, 1))


def lr_find(model_dir: Path, data_dir: Path, start_lr: float = 1e-7, end_lr: float = 10.0,
            steps: int = 100, divergence: float = 4.0, force: bool = False,
            apply: bool = False) -> Sweep:
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    if not 0 < start_lr < end_lr or not math.isfinite(end_lr):
        raise UserError(f"--start-lr {start_lr:g} and --end-lr {end_lr:g}: need 0 < start "
                        f"< end, e.g. --start-lr 1e-7 --end-lr 10")
    if steps < SKIP_START + 5:
        raise UserError(f"--steps {steps}: too few for a suggestion; use at least "
                        f"{SKIP_START + 5} (100 is usual)")
    if not divergence > 1:  # NaN too
        raise UserError(f"--divergence {divergence:g}: must be above 1 (4 stops once the "
                        f"loss is four times its best)")
    task, params = load_experiment(model_dir / files.PARAMS)
    _refuse_trained(model_dir, force, apply)
    rng = get_rng_state()
    try:
        with run_lock(model_dir):  # no train starts here until params.json is settled
            _refuse_trained(model_dir, force, apply)  # a run may have finished meanwhile
            sweep = _sweep(task, params, data_dir, Sweep(start_lr, end_lr, steps, divergence),
                           model_dir / files.PARAMS)
            sweep.suggestion = suggest(sweep.lrs, sweep.smoothed)
            write_json(model_dir / RESULT, {**_finite(asdict(sweep)), "applied": False,
                                            "learning_rate_now": params.learning_rate})
            _draw(sweep, model_dir / PICTURE, params.learning_rate)
            if apply:
                if sweep.suggestion is None:
                    raise UserError(f"{model_dir}: the sweep gave no suggestion "
                                    f"({sweep.stopped}); params.json is unchanged: look at "
                                    f"{PICTURE} and widen --start-lr/--end-lr")
                _apply(model_dir, sweep)
    finally:
        set_rng_state(rng)
    return sweep


def _refuse_trained(model_dir: Path, force: bool, apply: bool) -> None:
    trained = files.existing_outputs(model_dir)
    if trained and apply:
        raise UserError(f"{model_dir}: holds a trained run ({', '.join(trained[:3])}); "
                        f"--apply would make params.json disagree with its checkpoints: set "
                        f"learning_rate in a new experiment folder instead")
    if trained and not force:
        raise UserError(f"{model_dir}: holds a trained run ({', '.join(trained[:3])}); "
                        f"lr-find is for choosing a rate before training: pass --force to "
                        f"sweep anyway (it writes only {RESULT} and {PICTURE})")


def _finite(result: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity: a diverged step's loss is written as null."""
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v
    return {k: [clean(x) for x in v] if isinstance(v, list) else clean(v)
            for k, v in result.items()}


def _sweep(task: Any, params: Any, data_dir: Path, sweep: Sweep, params_file: Path) -> Sweep:
    # No schedule, average or warmup: the sweep itself sets the rate of every step.
    params = params.replace(scheduler="none", scheduler_interval=None, warmup_steps=0,
                            warmup_fraction=None, ema_decay=None, channels_last=bool(
                                params.channels_last))
    device = setup_torch(params)
    data_info = task.describe_data(params, data_dir)
    train = place(load_splits(task, params, data_dir, ("train",), data_info)["train"], device)
    loss = training_loss(task, params, train, data_info, params_file)
    trainer = build_trainer(task, params, device, data_info, train_data=train, train_loss=loss)
    trainer.train_model.train()
    base = [group["lr"] / params.learning_rate for group in trainer.optimizer.param_groups]
    k, best, average, i, epoch = params.accumulation_steps, math.inf, 0.0, 0, 0
    while i < sweep.steps:
        epoch += 1
        groups = batch_groups(train, epoch_order(len(train), params.seed, epoch, True),
                              params.batch_size)
        augment = epoch_generator(params.seed, epoch, AUGMENT_STREAM, device)
        batches = iterate_groups(train, groups, device, params.num_workers)
        totals = MetricTotals({}, device)
        for step, (inputs, labels) in enumerate(batches, start=1):
            micro = micro_at(step, k, len(groups))
            if micro.first:
                lr = sweep.rate(i)
                for group, scale in zip(trainer.optimizer.param_groups, base, strict=True):
                    group["lr"] = lr * scale
            try:
                trainer.train_step(inputs, labels, totals, augment, False, epoch, step, micro)
            except NonFiniteLoss:  # the rate is far too high
                sweep.stopped = f"loss not finite at lr {lr:.3g}"
                return sweep
            if not micro.last:
                continue
            loss = totals.compute()["loss"]
            totals = MetricTotals({}, device)
            average = SMOOTHING * average + (1 - SMOOTHING) * loss
            smooth = average / (1 - SMOOTHING ** (i + 1))
            sweep.lrs.append(lr)
            sweep.losses.append(loss)
            sweep.smoothed.append(smooth)
            i += 1
            if not math.isfinite(smooth):
                sweep.stopped = f"loss not finite at lr {lr:.3g}"
                return sweep
            if smooth > sweep.divergence * best:
                sweep.stopped = (f"smoothed loss {smooth:.3g} above {sweep.divergence:g}x "
                                 f"its best {best:.3g} at lr {lr:.3g}")
                return sweep
            best = min(best, smooth)
            if i >= sweep.steps:
                break
    return sweep


def suggest(lrs: list[float], smoothed: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest per decade of rate, or None."""
    points = list(zip(lrs, smoothed, strict=True))[SKIP_START:len(lrs) - SKIP_END]
    if len(points) < 3:
        return None
    slopes = [(b[1] - a[1]) / (math.log10(b[0]) - math.log10(a[0]))
              for a, b in zip(points, points[1:], strict=False)]
    steepest = min(range(len(slopes)), key=slopes.__getitem__)
    if not slopes[steepest] < 0:
        return None  # the loss never fell: no rate to suggest
    return points[steepest][0]


def _draw(sweep: Sweep, path: Path, current: float) -> None:
    from torchstarter.utils.plotting import figure, write_png

    fig = figure(6, 4, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(sweep.lrs, sweep.losses, color="0.75", lw=1, label="loss per step")
    ax.plot(sweep.lrs, sweep.smoothed, color="C0", lw=2, label="smoothed")
    if sweep.suggestion is not None:
        ax.axvline(sweep.suggestion, color="C3", ls="--",
                   label=f"suggested {sweep.suggestion:.2g}")
    ax.axvline(current, color="0.4", ls=":", label=f"params.json {current:.2g}")
    ax.set_xscale("log")
    finite = [v for v in sweep.smoothed + sweep.losses if math.isfinite(v)]
    if finite:  # keep the diverging tail from flattening the interesting part
        low = min(finite)
        top = min(max(finite), min(v for v in sweep.smoothed if math.isfinite(v))
                  * sweep.divergence) if any(map(math.isfinite, sweep.smoothed)) else max(finite)
        ax.set_ylim(low * 0.9 if low > 0 else low * 1.1, top * 1.1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"lr-find: {path.parent.name}")
    ax.legend(fontsize=8)
    with contextlib.suppress(OSError):  # the JSON holds the numbers; a picture may fail
        write_png(fig, path)


def _apply(model_dir: Path, sweep: Sweep) -> None:
    """learning_rate in params.json set to the suggestion, every other key as it was."""
    from torchstarter.config.params import read_params_file

    path = model_dir / files.PARAMS
    raw = read_params_file(path)
    old = raw.get("learning_rate")
    raw["learning_rate"] = float(f"{sweep.suggestion:.3g}")
    write_json(path, raw)
    result = model_dir / RESULT
    data = json.loads(result.read_text())
    data["applied"] = True
    write_json(result, data)
    log.info("%s: learning_rate %s -> %s", path, old, raw["learning_rate"])
