"""`torchstarter lr-find`: sweep the learning rate before training and suggest one."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchstarter.cli.flags import flag


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lr-find", help="suggest a learning rate by a short exponential sweep",
        description="Train a fresh model of the experiment for at most --steps optimizer "
                    "steps while the learning rate grows from --start-lr to --end-lr, stop "
                    "once the smoothed loss exceeds --divergence times its best, and write "
                    "lr_find.json and lr_find.png into the model dir. The suggestion is the "
                    "steepest descent of the smoothed loss. No checkpoint is written; "
                    "params.json changes only with --apply.")
    flag(p, "model_dir", required=True, type=Path, help="experiment folder with params.json")
    flag(p, "data_dir", required=True, type=Path, help="folder built by build-dataset")
    flag(p, "start_lr", type=float, default=1e-7, help="first rate (default 1e-7)")
    flag(p, "end_lr", type=float, default=10.0, help="last rate (default 10)")
    flag(p, "steps", type=int, default=100, help="most optimizer steps (default 100)")
    flag(p, "divergence", type=float, default=4.0,
         help="stop when the smoothed loss exceeds this many times its best (default 4)")
    flag(p, "apply", action="store_true",
         help="write the suggestion into params.json as learning_rate")
    flag(p, "force", action="store_true",
         help="sweep even in a folder that holds a trained run (its files stay untouched)")


def run(args: argparse.Namespace) -> int:
    from torchstarter.experiment.lr_find import PICTURE, RESULT, lr_find

    sweep = lr_find(args.model_dir, args.data_dir, args.start_lr, args.end_lr, args.steps,
                    args.divergence, args.force, args.apply)
    print(f"swept {len(sweep.lrs)} steps from lr {sweep.lrs[0]:.3g} to {sweep.lrs[-1]:.3g}"
          f" ({sweep.stopped})" if sweep.lrs else f"no step finished ({sweep.stopped})")
    if sweep.suggestion is None:
        print(f"no suggestion: the smoothed loss never fell; look at {PICTURE}")
    else:
        print(f"suggested learning_rate {sweep.suggestion:.3g} ({sweep.rule})")
        print("written into params.json" if args.apply else
              "params.json is unchanged (pass --apply to write it)")
    for name in (RESULT, PICTURE):
        print(f"wrote {args.model_dir / name}")
    return 0
