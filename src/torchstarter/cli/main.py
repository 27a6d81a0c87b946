"""Argument parsing and dispatch. Each subcommand's work lives outside this file.

Flags take both spellings, --data-dir and --data_dir, so the tutorial's command
lines keep working. Expected mistakes end as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from torchstarter import __version__
from torchstarter.cli import (
    compare,
    export,
    lr_find,
    new_project,
    search,
    serve,
    synthesize,
)
from torchstarter.cli.flags import OneLineParser, flag, restore_flag, set_flag
from torchstarter.engine.interrupt import StopRequested
from torchstarter.errors import UserError
from torchstarter.utils.folders import creatable_folder

# Subcommands that live in their own module: each has add_parser(sub) and run(args) -> int.
PLUGGED_COMMANDS = {"search": search, "synthesize": synthesize, "compare": compare,
                    "new": new_project, "lr-find": lr_find, "export": export,
                    "serve": serve}


def _task_in(argv: Sequence[str], default: str) -> str:
    """The --task value of a build-dataset command line, so its own flags can be added."""
    for i, arg in enumerate(argv):
        if arg == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--task="):
            return arg.split("=", 1)[1]
    return default


def build_parser(build_task: str | None = None, vocab_task: str | None = None
                 ) -> argparse.ArgumentParser:
    """The full parser; the task arguments add that task's build-dataset/-vocab flags."""
    parser = OneLineParser(
        prog="torchstarter",
        description="Build datasets, train, evaluate and predict with one shared engine.")
    parser.add_argument("--version", action="version", version=f"torchstarter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("build-dataset", help="turn raw data into train/val/test splits",
                       description="Turn raw data into train/val/test splits on disk.")
    flag(p, "task", default="signs", help="task whose raw data this is: signs (default), "
          "images, ner, or your own task")
    flag(p, "data_dir", required=True, type=Path, help="raw data (signs: a folder with "
          "train_signs/ and test_signs/; images: class folders, train/val/test folders of "
          "them, or a .csv of path,label; ner: a corpus file, or a folder of train/valid/test "
          "files)")
    flag(p, "output_dir", required=True, type=Path, help="folder to create with the splits")
    flag(p, "seed", type=int, default=230, help="seed of the train/val split (default 230)")
    flag(p, "overwrite", action="store_true",
          help="replace an existing output folder (only once the new one is complete)")
    if build_task is not None:
        from torchstarter.tasks import load_task

        task = load_task(build_task)
        task.add_build_arguments(p.add_argument_group(f"{task.name} options"))

    p = sub.add_parser("build-vocab", help="write the vocabulary of a built dataset",
                       description="Write words.txt, tags.txt and dataset_params.json into a "
                                   "folder made by build-dataset (tasks with a vocabulary).")
    flag(p, "task", default="ner", help="task (default: ner)")
    flag(p, "data_dir", required=True, type=Path, help="folder built by build-dataset")
    if vocab_task is not None:
        from torchstarter.tasks import load_task

        task = load_task(vocab_task)
        task.add_vocab_arguments(p.add_argument_group(f"{task.name} options"))

    p = sub.add_parser("train", help="train the experiment in a model dir",
                       description="Train the experiment whose params.json is in --model-dir; "
                                   "every output is written to that folder.")
    flag(p, "data_dir", required=True, type=Path, help="folder built by build-dataset")
    flag(p, "model_dir", required=True, type=Path, help="experiment folder with params.json")
    restore_flag(p, None, "continue from a checkpoint: last, best, or a file path; auto: "
                          "last when the model dir has last.pt, else a new run (for jobs "
                          "that a scheduler may requeue)")
    flag(p, "overwrite", action="store_true",
          help="start over in a model dir that holds a run; its files move to previous_runs/")
    flag(p, "no_tensorboard", action="store_true",
         help="do not write TensorBoard scalars (same as --set tensorboard=false)")
    flag(p, "requeue", action="store_true",
         help="in a SLURM job: after a stop signal (e.g. sbatch --signal=B:USR1@120) has "
              "saved the run, requeue the job with scontrol; needs --restore auto")
    set_flag(p)

    p = sub.add_parser("evaluate", help="compute metrics of a checkpoint on a split",
                       description="Evaluate a checkpoint on a split and write "
                                   "metrics_<split>_<restore>.json into the model dir.")
    flag(p, "data_dir", required=True, type=Path, help="folder built by build-dataset")
    flag(p, "model_dir", required=True, type=Path, help="experiment folder that was trained")
    flag(p, "split", default="test", help="split to evaluate (default: test)")
    restore_flag(p, "best", "checkpoint to evaluate: best (default), last, or a file path")
    set_flag(p)

    p = sub.add_parser("predict", help="predict labels for new inputs",
                       description="Print the predicted label and class probabilities.")
    flag(p, "model_dir", required=True, type=Path, help="experiment folder that was trained")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="what to predict for: image files or folders (signs); sentences, "
                        "text files with one sentence a line, or - for stdin (ner)")
    restore_flag(p, "best", "checkpoint to use: best (default), last, or a file path")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("sample-data", help="write the built-in raw sample data",
                       description="Write small real raw data in the task's raw layout "
                                   "(signs: scikit-learn's handwritten digits 0-5).")
    flag(p, "task", default="signs", help="task (default: signs)")
    flag(p, "output_dir", required=True, type=Path, help="folder to create")

    p = sub.add_parser("demo", help="the whole pipeline on built-in data",
                       description="sample-data, build-dataset, train, evaluate and predict "
                                   "on the built-in data, then print a summary.")
    flag(p, "output_dir", type=Path, default=None,
          help="folder for everything the demo writes (default: demo-runs/<time>)")
    flag(p, "task", action="append", choices=["signs", "ner", "images"], default=None,
          help="task to run, repeatable (default: signs and ner)")
    flag(p, "params", type=Path, default=None,
          help="params to train with (default: experiments/signs/base_model and "
               "experiments/ner/sample_demo)")
    flag(p, "raw_dir", type=Path, default=None,
          help="raw data to use instead of the built-in sample (e.g. data/SIGNS); "
               "needs a single --task")
    set_flag(p)

    for module in PLUGGED_COMMANDS.values():
        module.add_parser(sub)
    return parser


# Path shapes no file system accepts: the user's to fix, whichever command meets them.
PATH_ERRNOS = {errno.ENAMETOOLONG: "a name in the path is too long (at most 255 bytes)",
               errno.ELOOP: "symbolic link loop (following it never reaches a file)",
               errno.ENOTDIR: "a part of the path is a file, not a folder"}


def one_line(message: str) -> str:
    return message.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # a file name in no encoding is still printed
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    try:
        build_task = _task_in(argv, "signs") if "build-dataset" in argv else None
        vocab_task = _task_in(argv, "ner") if "build-vocab" in argv else None
        try:
            args = build_parser(build_task, vocab_task).parse_args(argv)
        except SystemExit as exc:  # --help, --version, or the one line of a flag mistake
            return exc.code if isinstance(exc.code, int) else 2
        if args.command in PLUGGED_COMMANDS:
            return PLUGGED_COMMANDS[args.command].run(args)
        return COMMANDS[args.command](args)
    except UserError as exc:  # one line, even when a file name holds a line break
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. `torchstarter synthesize | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # (after BrokenPipeError, which is one)
        if exc.errno not in PATH_ERRNOS:
            raise
        where = os.fsdecode(exc.filename) if exc.filename is not None else "a path"
        print(f"error: {one_line(where)}: {PATH_ERRNOS[exc.errno]}; check the path",
              file=sys.stderr)
        return 2
    except StopRequested as exc:
        print(f"interrupted: {exc}; rerun with --restore last to continue", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _task_step(hook: str):
    """A subcommand that runs one hook of the task and prints its summary lines (a task
    without the hook refuses in one line)."""
    def run(args: argparse.Namespace) -> int:
        from torchstarter.tasks import load_task

        for line in getattr(load_task(args.task), hook)(args):
            print(line)
        return 0
    return run


_build_dataset = _task_step("build_dataset")
_build_vocab = _task_step("build_vocab")


def _train(args: argparse.Namespace) -> int:
    from torchstarter.cli.slurm import is_first_process, requeue, requeue_job
    from torchstarter.config import parse_overrides
    from torchstarter.experiment.training import train

    job = requeue_job(args.requeue, "train", args.restore)
    overrides = parse_overrides(args.overrides)
    if args.no_tensorboard:
        overrides["tensorboard"] = False
    try:
        train(args.model_dir, args.data_dir, args.restore, overrides, overwrite=args.overwrite)
    except StopRequested:
        if job is not None and is_first_process():
            print(requeue(job), flush=True)
        raise
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from torchstarter.config import parse_overrides
    from torchstarter.experiment.evaluation import evaluate

    metrics, path = evaluate(args.model_dir, args.data_dir, args.split, args.restore,
                             parse_overrides(args.overrides))
    def is_table(value: Any) -> bool:  # e.g. per entity type: one row per type
        return isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())

    scalars: dict[str, Any] = {}
    weights = metrics.get("weights", {})
    intervals = metrics.get("intervals", {})
    for key, value in metrics.items():
        if key in ("weights", "intervals", "predictions_file", "analysis"):
            continue
        if isinstance(value, dict) and not is_table(value):  # e.g. partial_epoch
            scalars.update({f"{key}.{k}": v for k, v in value.items()})
        elif not is_table(value):
            scalars[key] = value
        if key in intervals:
            scalars[f"{key} 95% CI"] = f"{intervals[key]['low']:.4f}-{intervals[key]['high']:.4f}"
    print(tabulate([scalars], headers="keys", floatfmt=".4f"))
    if intervals:
        first = next(iter(intervals.values()))
        print(f"95% CI: percentile bootstrap over the {metrics['examples']} "
              f"{first['over']}, {first['resamples']} resamples, seed {first['seed']}")
    for key, table in metrics.items():
        if is_table(table) and key != "intervals":
            print(f"\n{key}:")
            print(tabulate([{"": name, **row} for name, row in table.items()], headers="keys",
                           floatfmt=".4f"))
    if not weights.get("own", True):
        print(f"weights from {weights['file']} (sha256 {weights['sha256'][:12]}), not this "
              f"experiment's own checkpoint: written under a name of their own")
    if "predictions_file" in metrics:
        print(f"wrote {Path(args.model_dir) / metrics['predictions_file']} (every example)")
    if metrics.get("analysis", {}).get("analysis_file"):
        print(f"wrote {Path(args.model_dir) / metrics['analysis']['analysis_file']} "
              f"(where the model is wrong)")
    print(f"wrote {path}")
    return 0


def flatten_row(row: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"{key[0]}({k})": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _predict(args: argparse.Namespace) -> int:
    from torchstarter.experiment.evaluation import predict

    task, rows = predict(args.model_dir, args.inputs, args.restore)
    text = None if args.json else task.format_predictions(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif text is not None:
        print(text)
    else:
        print(tabulate([flatten_row(r) for r in rows], headers="keys", floatfmt=".3f"))
    return 0


def _sample_data(args: argparse.Namespace) -> int:
    from torchstarter.tasks import load_task

    task = load_task(args.task)
    if not task.provides("write_sample_data"):
        raise UserError(f"task '{task.name}' ships no sample data")
    out = creatable_folder(Path(args.output_dir))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{args.output_dir}: exists and is not an empty folder; sample-data "
                        f"writes only into a new or empty folder, so it never replaces your "
                        f"data")
    counts = task.write_sample_data(out)
    print(f"wrote {args.output_dir}: {counts}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from torchstarter.cli.demo import run_demo

    run_demo(args.output_dir, args.task or ["signs", "ner"], args.params, args.overrides,
             args.raw_dir)
    return 0


COMMANDS = {"build-dataset": _build_dataset, "build-vocab": _build_vocab, "train": _train,
            "evaluate": _evaluate, "predict": _predict, "sample-data": _sample_data,
            "demo": _demo}

if __name__ == "__main__":
    raise SystemExit(main())
