"""One trial: `torchstarter train` on its folder as a child process, watched until it ends.

The child gets an argument list (never a shell string), its share of CPU threads, at
most one GPU, and its own session, so a terminal's Ctrl-C reaches it once, forwarded
by the search, and never twice. Its output goes to search_trial.log in its folder.
While it runs, each new epoch's validation metric is reported to the Optuna trial,
which may ask to prune it: the child then gets SIGTERM, saves and exits.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from torchstarter.experiment import files
from torchstarter.experiment.run_record import read_run_record
from torchstarter.search.folders import (
    THREADS_FILE,
    TRIAL_LOG,
    best_value,
    last_error_line,
    train_resume_args,
)
from torchstarter.search.study import DATABASE_ERRORS, is_outage
from torchstarter.utils.atomic import atomic_open, write_json
from torchstarter.utils.locking import FileLock

STOPPED_CODES = {128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGUSR1}
# A trial's process: `train` with a SIGUSR2 handler that reads a new thread count from
# THREADS_FILE in the trial folder. Named, not imported: search sits below the CLI.
CHILD_MODULE = "torchstarter.cli.search_trial"


@dataclass(frozen=True)
class TrialResult:
    state: str  # "finished", "failed", "pruned" or "interrupted"
    value: float | None = None
    error: str | None = None
    seconds: float = 0.0
    epochs: int = 0  # epochs reported to the study


@dataclass
class _Running:
    folder: Path
    threads: int


class Children:
    """The running children: one stop signal reaches every one, and idle cores go to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[subprocess.Popen, _Running] = {}
        self.stop_signal: int | None = None

    def add(self, proc: subprocess.Popen, folder: Path, threads: int) -> None:
        with self._lock:
            self._running[proc] = _Running(Path(folder), threads)
            stop = self.stop_signal
        if stop is not None:  # the signal came while this child was starting
            _send(proc, stop)

    def __len__(self) -> int:
        with self._lock:
            return len(self._running)

    def remove(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.pop(proc, None)

    def stop(self, signum: int) -> None:
        with self._lock:
            if self.stop_signal is None:
                self.stop_signal = signum
            running = list(self._running)
        for proc in running:
            _send(proc, signum)

    def share_out(self, budget: int) -> list[tuple[Path, int]]:
        """Give the running children the threads of finished ones; call when none will start.

        Returns the folders that got more threads, with their new count.
        """
        raised = []
        with self._lock:
            if not self._running or self.stop_signal is not None:
                return raised
            share = max(1, budget // len(self._running))
            for proc, child in self._running.items():
                if share > child.threads and proc.poll() is None:
                    with atomic_open(child.folder / THREADS_FILE, "w") as fh:
                        fh.write(f"{share}\n")
                    _send(proc, signal.SIGUSR2)
                    child.threads = share
                    raised.append((child.folder, share))
        return raised


def _send(proc: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)


def train_command(folder: Path, data_dir: Path) -> list[str]:
    """`torchstarter train` through CHILD_MODULE, which lets the search add threads later.

    num_threads=null keeps train from setting a count of its own (a base params value
    included): the child starts with OMP_NUM_THREADS, its share, and only the search
    changes it after that.
    """
    return [sys.executable, "-m", CHILD_MODULE, "train", "--model-dir",
            str(folder), "--data-dir", str(data_dir), *train_resume_args(folder),
            "--set", "num_threads=null"]


def child_env(threads: int, gpu: str | None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


class EpochReporter:
    """Reports each epoch of history.json once, as the trial's intermediate value."""

    def __init__(self, trial: optuna.Trial, folder: Path, metric: str):
        self.trial = trial
        self.path = Path(folder) / files.HISTORY
        self.key = f"val_{metric}"
        self.reported = 0
        self._seen: tuple[float, int] | None = None

    def report_new(self) -> bool:
        """True when at least one new epoch was reported."""
        try:
            stat = self.path.stat()
        except OSError:
            return False
        if self._seen == (stat.st_mtime, stat.st_size):
            return False
        self._seen = (stat.st_mtime, stat.st_size)
        try:
            history = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return False  # a run that started over; read it on the next poll
        if not isinstance(history, list):
            return False
        new = False
        for row in history[self.reported:]:
            value = row.get(self.key) if isinstance(row, dict) else None
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.trial.report(float(value), step=int(row.get("epoch", self.reported + 1)))
                new = True
            self.reported += 1
        return new


def _report(reporter: EpochReporter) -> bool:
    """Report new epochs; a trial declared lost meanwhile (see study.py) takes no more, and
    a database that is away gets them on a later poll."""
    try:
        return reporter.report_new()
    except (UpdateFinishedTrialError, *DATABASE_ERRORS) as exc:
        if isinstance(exc, DATABASE_ERRORS) and not is_outage(exc):
            raise
        reporter._seen = None  # read history.json again on the next poll
        return False


def _should_prune(trial: optuna.Trial) -> bool:
    try:
        return trial.should_prune()
    except DATABASE_ERRORS as exc:
        if not is_outage(exc):
            raise
        return False  # asked again after the next epoch


def mark_pruned(folder: Path, epochs: int) -> None:
    """Let run.json say the search stopped the trial on purpose, not that it was cut off."""
    record = read_run_record(folder)
    if record is not None and record.get("status") == "interrupted":
        record.update(status="pruned", error=f"pruned by the search after epoch {epochs}")
        with contextlib.suppress(OSError):
            write_json(Path(folder) / files.RUN_RECORD, record)


def run_trial(trial: optuna.Trial, folder: Path, data_dir: Path, metric: str, threads: int,
              gpu: str | None, claim: FileLock, children: Children, prune: bool,
              poll_seconds: float = 0.5,
              on_poll: Callable[[], None] = lambda: None) -> TrialResult:
    """Run `train` on the folder (fresh, continued or started over) and say how it ended.

    on_poll runs every poll_seconds while the child lives (the search's heartbeat)."""
    command = train_command(folder, data_dir)
    log = Path(folder) / TRIAL_LOG
    started = time.monotonic()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"==== search trial {trial.number}: {shlex.join(command)} ====\n")
        out.flush()
        # The child inherits the claim, so the folder stays claimed while either lives,
        # and SIGUSR2 blocked, until the child (CHILD_MODULE) has its handler in place.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=child_env(threads, gpu),
                                    pass_fds=(claim.fileno(),), start_new_session=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    claim.note_holder(proc.pid)  # the child keeps the claim, even past this search
    children.add(proc, folder, threads)
    reporter = EpochReporter(trial, folder, metric)
    pruned = False
    try:
        while True:
            try:
                proc.wait(timeout=poll_seconds)
                break
            except subprocess.TimeoutExpired:
                pass
            on_poll()
            if _report(reporter) and prune and not pruned and _should_prune(trial):
                pruned = True
                _send(proc, signal.SIGTERM)  # train saves a resumable checkpoint and exits
    finally:
        children.remove(proc)
    _report(reporter)
    seconds = time.monotonic() - started
    code = proc.returncode
    if code == 0:
        value = best_value(folder, metric)
        if value is None:
            return TrialResult("failed", error=f"no finite val {metric} in {files.VAL_BEST}",
                               seconds=seconds, epochs=reporter.reported)
        return TrialResult("finished", value, seconds=seconds, epochs=reporter.reported)
    if pruned:
        mark_pruned(folder, reporter.reported)
        return TrialResult("pruned", seconds=seconds, epochs=reporter.reported)
    if children.stop_signal is not None or code in STOPPED_CODES:
        return TrialResult("interrupted", error="interrupted; rerun the search to continue it",
                           seconds=seconds, epochs=reporter.reported)
    error = f"killed by signal {-code}" if code < 0 else last_error_line(log)
    return TrialResult("failed", error=error, seconds=seconds, epochs=reporter.reported)
