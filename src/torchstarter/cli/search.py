"""`torchstarter search`: hyper-parameter search over child experiments of a parent folder.

The parent's params.json is the base and its search.json the space (or --grid). Exit
codes: 0 when every trial finished or was pruned, 1 when any failed or is left
unfinished, 2 for bad input, 130 after Ctrl-C (rerun the same command to continue).
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

from torchstarter.cli.flags import flag, set_flag
from torchstarter.errors import UserError

SEARCH_FILE = "search.json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="hyper-parameter search over child experiments",
        description="Train one child experiment per setting under --parent-dir, whose "
                    "params.json is the base and whose search.json says what to search "
                    "(see docs/search.md). Rerun the same command to continue a search.")
    flag(p, "parent_dir", required=True, type=Path,
         help="folder with the base params.json and search.json; trials are created in it")
    flag(p, "data_dir", required=True, type=Path, help="folder built by build-dataset")
    flag(p, "grid", action="append", default=[], metavar="KEY=V1,V2,...",
         help="search this grid instead of search.json's space (repeatable), "
              "e.g. --grid learning_rate=1e-4,1e-3,1e-2")
    flag(p, "jobs", type=int, default=1,
         help="trials run at once, each in its own process with its share of the CPU "
              "threads, or its own GPU where there are several (default 1)")
    flag(p, "storage", default=None, metavar="URL|FILE",
         help="Optuna storage shared by all workers: a database URL (postgresql://, "
              "mysql://, sqlite:///) or a journal file (default: PARENT/search.journal)")
    flag(p, "study_name", default=None,
         help="name of the study in the storage (default: the parent folder's name)")
    flag(p, "heartbeat", type=int, default=None, metavar="SECONDS",
         help="database storage: each running trial's heartbeat interval; a trial silent "
              "for twice as long is taken as lost and retried (default 60). A journal file "
              "has none: a lost trial is found by its folder's released claim")
    flag(p, "requeue", action="store_true",
         help="in a SLURM job: after a stop signal (e.g. sbatch --signal=B:USR1@120) has "
              "saved the running trials, requeue the job with scontrol")
    flag(p, "retry_failed", action="store_true",
         help="run failed trials again (continuing from their last checkpoint)")
    set_flag(p, "override the base params.json keys for every trial, e.g. --set "
                "num_epochs=3 (written into each trial's params.json; a rerun must pass "
                "the same values)")


def _check_data(base_raw: dict, base_path: Path, data_dir: Path) -> None:
    """Load the train and val splits once, as train will: a wrong --data-dir would fail
    every trial, and a rerun would then need --retry-failed."""
    from torchstarter.experiment.training import load_splits
    from torchstarter.tasks.registry import resolve_params

    task, params = resolve_params(base_raw, str(base_path), base_path.parent)
    try:
        data_info = task.describe_data(params, data_dir)
        load_splits(task, params, data_dir, ("train", "val"), data_info)
    except (OSError, ValueError) as exc:
        raise UserError(f"--data-dir {data_dir}: cannot read the {task.name} data "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                        f"check --data-dir") from None


def _load(args: argparse.Namespace):
    from torchstarter.config.params import parse_overrides, read_params_file
    from torchstarter.search.scheduler import SearchJob
    from torchstarter.search.space import (
        check_against_params,
        parse_grid_flags,
        read_search_file,
        with_grid,
    )
    from torchstarter.search.study import HEARTBEAT_S

    parent = Path(args.parent_dir)
    if not parent.is_dir():
        raise UserError(f"{parent}: parent folder not found; create it with the base "
                        f"params.json and a search.json")
    if not Path(args.data_dir).is_dir():
        raise UserError(f"{args.data_dir}: data folder not found; check --data-dir")
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be 1 or more")
    database = args.storage is not None and "://" in args.storage
    if args.heartbeat is not None and not database:
        raise UserError(f"--heartbeat {args.heartbeat}: only a database storage has a heartbeat "
                        f"(a journal file finds lost trials by their folder claims); drop it "
                        f"or give --storage a database URL")
    if args.heartbeat is not None and args.heartbeat < 1:
        raise UserError(f"--heartbeat {args.heartbeat}: must be 1 second or more")
    search_file = parent / SEARCH_FILE
    spec = read_search_file(search_file) if search_file.is_file() else None
    if args.grid:
        spec = with_grid(spec, parse_grid_flags(args.grid))
    if spec is None:
        raise UserError(f"{search_file}: not found; write it (see docs/search.md), e.g. "
                        f'{{"space": {{"learning_rate": [1e-4, 1e-3, 1e-2]}}}}, or pass '
                        f"--grid learning_rate=1e-4,1e-3,1e-2")
    base_path = parent / "params.json"
    base_raw = read_params_file(base_path)
    overrides = parse_overrides(args.overrides)
    chosen = set(spec.space) | ({"metric", "metric_mode"}
                                if spec.metric is not None or spec.direction is not None
                                else set())
    searched = sorted(set(overrides) & chosen)
    if searched:
        raise UserError(f"--set {searched[0]}: the search sets this key for every trial (it "
                        f"is searched, or follows the search's metric); drop it from --set")
    if overrides:
        from torchstarter.tasks.registry import resolve_params

        base_raw = {**base_raw, **overrides}
        resolve_params(base_raw, f"{base_path} (with --set)", parent)  # blame the flag
    objective = check_against_params(spec, base_raw, base_path)
    _check_data(base_raw, base_path, Path(args.data_dir))
    return SearchJob(parent=parent, data_dir=Path(args.data_dir), spec=spec,
                     objective=objective, base_raw=base_raw,
                     study_name=args.study_name or parent.resolve().name, jobs=args.jobs,
                     storage=args.storage, retry_failed=args.retry_failed,
                     heartbeat=args.heartbeat or HEARTBEAT_S)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def run(args: argparse.Namespace) -> int:
    from torchstarter.cli.slurm import requeue, requeue_job
    from torchstarter.search.scheduler import Search
    from torchstarter.search.study import trial_values

    slurm_job = requeue_job(args.requeue, "search")  # a rerun always continues a search
    job = _load(args)
    search = Search(job, say=lambda line: print(line, flush=True))
    space = ", ".join(search.spec.space)
    plan = (f"grid of {_count(len(search.grid), 'point')}" if search.grid is not None
            else f"{search.spec.method}, {_count(search.spec.n_trials, 'trial')}")
    print(f"search '{job.study_name}' in {search.where}: {plan} over {space}; "
          f"{search.workers} at once x {search.threads} thread"
          f"{'s' if search.threads > 1 else ''}; {job.objective.metric} "
          f"({'higher' if job.objective.mode == 'max' else 'lower'} is better)", flush=True)
    summary = search.run()

    counts = summary.counts
    total = sum(counts.values())
    parts = [f"{counts[s]} {s}" for s in ("finished", "pruned", "failed", "unfinished")
             if counts[s] or s in ("finished", "failed")]
    print(f"\n{_count(total, 'trial')}: {', '.join(parts)}")
    for name, error in summary.failures:
        print(f"  failed: {name}: {error}")
    if summary.best is not None:
        values = json.dumps(trial_values(summary.best))
        print(f"best: {summary.best.user_attrs.get('folder')}  {summary.metric} "
              f"{summary.best.value:.4f}  {values}")
    if summary.stopped_by is not None and slurm_job is not None:
        print(requeue(slurm_job), flush=True)  # first: the job's time is running out
    from torchstarter.report.synthesize import synthesize

    table = synthesize(job.parent)  # also writes results.md, results.csv and search plots
    if table:
        print()
        print(table)
    if summary.stopped_by is not None:
        print(f"stopped by {signal.Signals(summary.stopped_by).name}; rerun the same "
              f"command to continue")
        return 128 + summary.stopped_by
    return 1 if counts["failed"] or counts["unfinished"] else 0
