"""Typed descriptions of every key a params.json may hold.

A schema is a plain dict of name -> Field. The engine's keys live here; each task
adds its own. Validation, error messages and the params reference in the docs are
all derived from these Field objects, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Field:
    type: type  # int, float, str or bool
    help: str
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    nullable: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe_range(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.min_exclusive else '>='} {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return " and ".join(parts)


COMMON_SCHEMA: dict[str, Field] = {
    "task": Field(str, "Built-in task name (signs, ner), or the module path or .py file of "
                  "your own task, looked for from the params folder upwards, then in the "
                  "current folder."),
    "learning_rate": Field(float, "Initial learning rate.", min=0, min_exclusive=True),
    "batch_size": Field(int, "Examples per training step.", min=1),
    "num_epochs": Field(int, "Number of passes over the training split.", min=1),
    "optimizer": Field(str, "Optimizer.", default="adam", choices=("adam", "adamw", "sgd")),
    "momentum": Field(float, "Momentum, used by sgd only.", default=0.9, min=0, max=1),
    "weight_decay": Field(float, "Weight decay (L2 for adam/sgd, decoupled for adamw).",
                          default=0.0, min=0),
    "seed": Field(int, "Seed of every random number generator.", default=230, min=0,
                  max=2**63 - 1),
    "scheduler": Field(str, "Learning-rate schedule: step and plateau decay per epoch; "
                       "cosine per epoch or per optimizer step (scheduler_interval); onecycle "
                       "(rise then anneal, torch's OneCycleLR with learning_rate as its peak; "
                       "momentum is not cycled) per optimizer step.", default="none",
                       choices=("none", "step", "cosine", "plateau", "onecycle")),
    "scheduler_interval": Field(str, "When the schedule moves: 'epoch' or 'step' (after each "
                                "optimizer step); null: step for onecycle, epoch otherwise.",
                                default=None, choices=("epoch", "step"), nullable=True),
    "warmup_steps": Field(int, "Optimizer steps of linear warmup: the scheduled rate is "
                          "scaled by (s + 1) / warmup_steps at step s, in front of any "
                          "schedule (for onecycle it sets the rising phase). 0: off.",
                          default=0, min=0),
    "warmup_fraction": Field(float, "Warmup as a share of all optimizer steps of the run, "
                             "instead of warmup_steps; null: use warmup_steps.",
                             default=None, min=0, max=1, nullable=True),
    "accumulation_steps": Field(int, "Micro-batches of batch_size whose gradients add up to "
                                "one optimizer step (the loss is normalised by the count of "
                                "all of them, so k x batch b steps like one batch of k*b); "
                                "an epoch's last group may be shorter.", default=1, min=1),
    "ema_decay": Field(float, "Keep an exponential moving average of the weights with this "
                       "decay (e.g. 0.999), updated after every optimizer step; validation, "
                       "best.pt, evaluate and predict then use the averaged weights. null: "
                       "off.", default=None, min=0, max=0.999999, min_exclusive=True,
                       nullable=True),
    "ema_every": Field(int, "Average every this many optimizer steps, with the decay of "
                       "as many steps (ema_decay ** ema_every): the same horizon for less "
                       "memory traffic, for models whose weights are large next to a step's "
                       "work (NER's embedding). 1: every step.", default=1, min=1),
    "ema_warmup": Field(bool, "Let the average follow the weights faster at first: decay "
                        "min(ema_decay, (1 + n) / (10 + n)) after n updates.", default=False),
    "step_size": Field(int, "Epochs between decays of the step scheduler.", default=10, min=1),
    "gamma": Field(float, "Decay factor of the step and plateau schedulers.", default=0.1,
                   min=0, max=1, min_exclusive=True),
    "plateau_patience": Field(int, "Epochs without improvement before plateau decays.",
                              default=2, min=0),
    "early_stopping_patience": Field(int, "Stop after this many epochs without a better "
                                     "validation metric; null never stops early.",
                                     default=None, min=1, nullable=True),
    "grad_clip_norm": Field(float, "Clip the global gradient norm to this value; null: off.",
                            default=None, min=0, min_exclusive=True, nullable=True),
    "metric": Field(str, "Validation metric that selects the best checkpoint ('loss' or one "
                    "of the task's metrics); null: the task's default.", default=None,
                    nullable=True),
    "metric_mode": Field(str, "Whether a larger or smaller metric is better; null: 'min' "
                         "for loss, 'max' otherwise.", default=None,
                         choices=("max", "min"), nullable=True),
    "device": Field(str, "Where to train: auto picks cuda when available.", default="auto",
                    choices=("auto", "cpu", "cuda")),
    "precision": Field(str, "fp32; bf16 autocast (CPUs with bf16 support, Ampere or newer "
                       "GPUs); fp16 autocast with loss scaling (GPUs).", default="fp32",
                       choices=("fp32", "bf16", "fp16")),
    "compile": Field(str, "torch.compile the training forward: 'default', or "
                     "'reduce-overhead' (CUDA graphs, for small static-shape steps on a GPU), "
                     "or 'max-autotune'; pays off only when the run is much longer than the "
                     "compile time.", default="none",
                     choices=("none", "default", "reduce-overhead", "max-autotune")),
    "channels_last": Field(bool, "Keep 4-d image batches and the model in channels_last "
                           "memory format; null: decided per machine (on a CPU by timing a "
                           "few steps of both once, cached; on a GPU true). It made SIGNS "
                           "1.45x faster on an AMD EPYC and slower on an Intel Xeon with "
                           "AMX. No effect on other inputs.", default=None, nullable=True),
    "num_threads": Field(int, "CPU threads for torch; null: torch's default (one per core).",
                         default=None, min=1, nullable=True),
    "num_workers": Field(int, "DataLoader worker processes for tasks whose data is read "
                         "per example; built-in tasks keep data in memory and need none.",
                         default=0, min=0),
    "tensorboard": Field(bool, "Write TensorBoard scalars (losses, metrics, learning rate, "
                         "samples/s) to <model dir>/tensorboard/.", default=True),
    "plots": Field(bool, "Draw <model dir>/learning_curve.png: at the end of the run "
                   "and, during it, after an epoch once 30 s have passed since the last "
                   "drawing.",
                   default=True),
    "save_summary_steps": Field(int, "Training steps between running-loss lines in train.log.",
                                default=100, min=1),
}


def combination_problem(params: Any) -> str | None:
    """What is wrong with a combination of engine keys that are each valid, or None."""
    interval = params.scheduler_interval
    if interval == "step" and params.scheduler in ("step", "plateau"):
        return (f"key 'scheduler_interval': 'step' needs scheduler cosine or onecycle; "
                f"{params.scheduler} decays once per epoch (set scheduler_interval to epoch "
                f"or null)")
    if interval == "epoch" and params.scheduler == "onecycle":
        return ("key 'scheduler_interval': onecycle moves after every optimizer step; set "
                "scheduler_interval to step or null")
    if params.warmup_fraction is not None and params.warmup_steps:
        return ("keys 'warmup_steps' and 'warmup_fraction' are both set; keep one of them")
    return None
