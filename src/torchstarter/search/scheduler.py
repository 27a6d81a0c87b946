"""The search loop: --jobs workers, each taking the next trial and running it as a child.

Which trial is next: for a grid, the next point whose folder is not final in the study;
for random and tpe, first a trial left unfinished by an earlier search, then a new
sample while the study has fewer than n_trials folders (counted and drawn while holding
the parent's sampling lock, so several processes never overshoot). A worker must claim a
trial's folder before it runs it (see folders.py), and it re-reads the study after claiming,
so a point finished by another worker or process in the meantime is never run twice.
A point claimed by another process is waited for, so every search that ends has seen
every trial end and prints the whole study.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from torchstarter.search import study as st
from torchstarter.search.folders import (
    DiskRun,
    child_params,
    claim,
    claim_holder,
    ensure_trial_folder,
    read_run,
    release,
    sampling_turn,
    train_resume_args,
)
from torchstarter.search.naming import trial_folder_name
from torchstarter.search.runner import Children, TrialResult, run_trial
from torchstarter.search.space import Objective, SearchSpec, grid_points
from torchstarter.utils.locking import FileLock

WAIT = "wait"  # next_work's answer when the only trials left are held by other processes
DUPLICATE_LIMIT = 50  # samples in a row that repeat tried values before giving up


@dataclass
class SearchJob:
    """Everything a search needs, already checked."""

    parent: Path
    data_dir: Path
    spec: SearchSpec
    objective: Objective
    base_raw: dict[str, Any]
    study_name: str
    jobs: int = 1
    storage: str | None = None
    retry_failed: bool = False
    poll_seconds: float = 0.5
    heartbeat: int | None = st.HEARTBEAT_S  # seconds; database storage only


@dataclass
class Work:
    name: str
    values: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    claim: FileLock
    trial: optuna.Trial | None = None  # set when the sampler has just drawn it


@dataclass
class SearchSummary:
    study_name: str
    storage: str
    metric: str
    mode: str
    counts: Counter = field(default_factory=Counter)  # finished, pruned, failed, unfinished
    failures: list[tuple[str, str]] = field(default_factory=list)
    best: FrozenTrial | None = None
    stopped_by: int | None = None


def cpu_budget() -> int:
    """Threads the whole search may use: OMP_NUM_THREADS when set (as for torch), else cores."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        pass
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [i.strip() for i in listed.split(",") if i.strip()] if listed else []
    return ids[:count] if len(ids) >= count else [str(i) for i in range(count)]


class Search:
    def __init__(self, job: SearchJob, say: Callable[[str], None] = print):
        self.job = job
        self._say = say
        self._say_lock = threading.Lock()
        self.storage, self.where = st.open_storage(job.parent, job.storage, job.heartbeat)
        self.study, self.spec = st.open_study(self.storage, job.study_name, job.spec,
                                              job.objective, self.where,
                                              own_storage=job.storage is None)
        self.grid = ([(trial_folder_name(v), v) for v in grid_points(self.spec)]
                     if self.spec.method == "grid" else None)
        # Grid trials register no Optuna params (see study.py); sampled ones need them.
        self.distributions = ({} if self.grid is not None else
                              {k: d.distribution() for k, d in self.spec.space.items()})
        self.lock = threading.Lock()  # guards choosing work and the sets below
        self.running: set[str] = set()  # folders this process is running now
        self.attempted: set[str] = set()  # folders this process has dealt with
        self.waited_for: set[str] = set()  # folders held elsewhere, already announced
        self.duplicates = 0
        self.children = Children()
        self.outage = st.Outage(self.say)
        self.fatal: BaseException | None = None
        self.workers = max(1, min(job.jobs, self._left_to_run()))
        self.budget = cpu_budget()
        self.threads = max(1, self.budget // self.workers)
        self.gpus = visible_gpus()

    # ---- console ----------------------------------------------------------------------

    def say(self, message: str) -> None:
        with self._say_lock:
            self._say(message)

    # ---- bookkeeping --------------------------------------------------------------------

    def _latest(self) -> dict[str, FrozenTrial]:
        return st.latest_by_folder(self.study.get_trials(deepcopy=False))

    def _final(self, trial: FrozenTrial | None) -> bool:
        state = st.outcome(trial)
        return state in ("finished", "pruned") or (state == "failed" and
                                                   not self.job.retry_failed)

    def _left_to_run(self) -> int:
        latest = self._latest()
        if self.grid is not None:
            return sum(not self._final(latest.get(name)) for name, _ in self.grid)
        unfinished = sum(not self._final(t) for t in latest.values())
        return unfinished + max(0, self.spec.n_trials - len(latest))

    def _folder(self, name: str, values: dict[str, Any]) -> Path:
        params = child_params(self.job.base_raw, self.job.parent, values,
                              self.job.objective.child_overrides)
        return ensure_trial_folder(self.job.parent, name, params)

    def check_existing_folders(self) -> None:
        """Fail on a folder whose params differ before any trial starts, not midway."""
        latest = self._latest()
        pairs = self.grid if self.grid is not None else [(n, st.trial_values(t)) for n, t in
                                                         latest.items()]
        for name, values in pairs:
            if (self.job.parent / name).exists():
                self._folder(name, dict(values))

    # ---- choosing work ----------------------------------------------------------------

    def _claim(self, name: str, values: dict[str, Any],
               distributions: dict[str, BaseDistribution]) -> Work | None:
        lock = claim(self._folder(name, values))
        if lock is None:
            return None
        self.running.add(name)
        return Work(name, values, distributions, lock)

    def next_work(self) -> Work | str | None:
        """The next trial to run (claimed), WAIT, or None when nothing is left."""
        st.fail_stale_trials(self.study)  # trials whose worker stopped its heartbeat
        latest = self._latest()
        waiting = False
        if self.grid is not None:
            candidates = [(name, values, self.distributions) for name, values in self.grid]
        else:
            candidates = [(name, st.trial_values(t), dict(t.distributions))
                          for name, t in latest.items()]
        for name, values, distributions in candidates:
            if name in self.running or name in self.attempted or self._final(latest.get(name)):
                continue
            work = self._claim(name, values, distributions)
            if work is not None:
                return work
            self._announce_wait(name)
            waiting = True
        if self.grid is None:
            with sampling_turn(self.job.parent):  # count and draw as one step
                seen, latest = latest, self._latest()
                if len(latest) < self.spec.n_trials:
                    return self._sample(latest)
            # Another process drew while this one waited for the lock: wait for its trial.
            waiting = waiting or any(name not in seen and not self._final(trial)
                                     for name, trial in latest.items())
        return WAIT if waiting else None

    def _announce_wait(self, name: str) -> None:
        """Say once why this process idles: another process holds the folder."""
        if name in self.waited_for:
            return
        self.waited_for.add(name)
        holder = claim_holder(self.job.parent / name)
        self.say(f"waiting for {name} (held by {holder or 'another process'})")

    def _sample(self, latest: dict[str, FrozenTrial]) -> Work | str | None:
        trial = self.study.ask(self.distributions)
        values = {k: trial.params[k] for k in self.spec.space}
        name = trial_folder_name(values)
        if name in latest or name in self.running:
            trial.set_user_attr("duplicate_of", name)
            self.study.tell(trial, state=TrialState.FAIL)
            self.duplicates += 1
            if self.duplicates >= DUPLICATE_LIMIT:
                self.say(f"the sampler proposed {DUPLICATE_LIMIT} tried settings in a row; "
                         f"stopping at {len(latest)} trials")
                return None
            return WAIT
        self.duplicates = 0
        work = self._claim(name, values, self.distributions)
        if work is None:  # someone else made this exact folder: leave the draw unused
            self.study.tell(trial, state=TrialState.FAIL)
            return WAIT
        trial.set_user_attr(st.FOLDER_ATTR, name)
        trial.set_user_attr(st.VALUES_ATTR, values)
        work.trial = trial
        return work

    # ---- running work -----------------------------------------------------------------

    def worker(self, slot: int) -> None:
        try:
            while self.children.stop_signal is None and self.fatal is None:
                with self.lock, self.outage.waiting_out("choosing the next trial") as up:
                    work = self.next_work()
                if not up:
                    time.sleep(self.job.poll_seconds)
                    continue
                if work is None:
                    self._share_idle_threads()
                    return
                if work is WAIT:
                    time.sleep(self.job.poll_seconds)
                    continue
                try:
                    self.process(work, slot)
                finally:
                    release(work.claim)
                    with self.lock:
                        self.running.discard(work.name)
                        self.attempted.add(work.name)
        except BaseException as exc:  # stop the search; run() raises it in the main thread
            if self.fatal is None:
                self.fatal = exc
            self.children.stop(signal.SIGINT)

    def _share_idle_threads(self) -> None:
        """This slot stays empty: its threads go to the trials still running."""
        if self.gpus:
            return  # trials on GPUs barely use their CPU threads
        for folder, threads in self.children.share_out(self.budget):
            self.say(f"{folder.name}: now {threads} threads (a slot is free)")

    def _start_trial(self, work: Work, latest: FrozenTrial | None, give_up: bool = True
                     ) -> tuple[optuna.Trial | None, str]:
        """The claimed folder's trial: the queued retry of a lost one, or a new one; with
        a note saying which. None when the folder lost its worker too often (unless the
        caller holds a result for it: give_up=False)."""
        if latest is not None and latest.state == TrialState.RUNNING:
            # This process holds the folder's claim, so the one that ran the trial is gone.
            st.retire_lost(self.study, self.storage, latest)
            latest = self._latest().get(work.name)
        # A lost trial is failed first and its retry queued just after, perhaps by another
        # worker's heartbeat check: give that a moment before starting a trial of our own.
        patience = time.monotonic() + 5
        while (latest is not None and st.is_lost(latest) and not self.job.retry_failed
               and time.monotonic() < patience):
            if st.retries_used(latest) >= st.MAX_RETRIES:
                if not give_up:
                    break
                self.say(f"trial {latest.number}: {work.name} lost its worker "
                         f"{st.MAX_RETRIES + 1} times; given up (--retry-failed runs it again)")
                return None, ""
            time.sleep(0.2)
            latest = self._latest().get(work.name)
        queued = latest if latest is not None and latest.state == TrialState.WAITING else None
        trial = st.ask_with_values(self.study, self.storage, work.values, work.distributions,
                                   queued)
        trial.set_user_attr(st.FOLDER_ATTR, work.name)
        trial.set_user_attr(st.VALUES_ATTR, work.values)
        if queued is not None and trial.number == queued.number:
            return trial, f" (retry of trial {st.retry_of(queued)}, whose worker was lost)"
        return trial, ""

    def process(self, work: Work, slot: int) -> None:
        folder = self.job.parent / work.name
        trial = work.trial
        if trial is None:
            if self.children.stop_signal is not None:
                return  # stopping: do not open a trial that would not run
            with self.lock:  # fresh: the folder may have been finished before we claimed it
                latest = self._latest().get(work.name)
            if self._final(latest):
                return
            disk = read_run(folder, self.job.objective.metric)
            if disk.state == "finished" or (disk.state == "failed" and
                                            not self.job.retry_failed):
                self._record_from_disk(work, latest, disk)
                return
            trial, note = self._start_trial(work, latest)
            if trial is None:
                return
        else:
            note = ""
        gpu = self.gpus[slot % len(self.gpus)] if len(self.gpus) > 1 else None
        how = {"--restore": "continued", "--overwrite": "started over"}.get(
            next(iter(train_resume_args(folder)), ""), "started")
        self.say(f"trial {trial.number} {how}: {work.name}{note} ({self.threads} thread"
                 f"{'s' if self.threads > 1 else ''}{f', GPU {gpu}' if gpu else ''})")
        heartbeat = st.Heartbeat(self.storage, trial)

        def beat() -> None:
            line = heartbeat.beat()
            if line:
                self.say(f"trial {trial.number}: {line}")

        result = run_trial(trial, folder, self.job.data_dir, self.job.objective.metric,
                           self.threads, gpu, work.claim, self.children,
                           prune=self.spec.pruner != "none", poll_seconds=self.job.poll_seconds,
                           on_poll=beat)
        self._record(trial, work, result)

    def _record_from_disk(self, work: Work, latest: FrozenTrial | None, disk: DiskRun) -> None:
        """A folder whose run already ended (e.g. it outlived a killed search): no retraining."""
        trial, _ = self._start_trial(work, latest)
        if trial is None:
            return
        if disk.error:
            trial.set_user_attr(st.ERROR_ATTR, disk.error)
        state = TrialState.COMPLETE if disk.state == "finished" else TrialState.FAIL
        self.study.tell(trial, disk.value, state=state)
        if disk.state == "finished":
            self.say(f"trial {trial.number}: {work.name} had already finished: "
                     f"{self.job.objective.metric} {disk.value:.4f} (not retrained)")
        else:
            self.say(f"trial {trial.number}: {work.name} had already failed: {disk.error}")

    def _record(self, trial: optuna.Trial, work: Work, result: TrialResult) -> None:
        """Record a result in hand: a database outage is waited out, and a trial declared
        lost while it ran (no heartbeat for the grace period, e.g. the database was away)
        passes its result to its retry."""
        while True:
            with self.outage.waiting_out(f"recording trial {trial.number}") as up:
                if self.storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
                    lost = trial.number
                    with self.lock:
                        latest = self._latest().get(work.name)
                    trial, _ = self._start_trial(work, latest, give_up=False)
                    self.say(f"trial {lost} was declared lost while it ran; its result is "
                             f"recorded as trial {trial.number}")
                try:
                    self._tell(trial, work.name, result)
                    return
                except (ValueError, UpdateFinishedTrialError):
                    if self.storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                        raise
                    continue  # failed as lost between the check and the tell: once more
            if not up:
                time.sleep(1)

    def _tell(self, trial: optuna.Trial, name: str, result: TrialResult) -> None:
        took = f"{result.seconds:.1f} s"
        metric = self.job.objective.metric
        if result.state == "finished":
            self.study.tell(trial, result.value)
            self.say(f"trial {trial.number} finished: {name} {metric} {result.value:.4f} "
                     f"({took})")
            return
        if result.state == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
            self.say(f"trial {trial.number} pruned after epoch {result.epochs}: {name} ({took})")
            return
        trial.set_user_attr(st.ERROR_ATTR, result.error)
        if result.state == "interrupted":
            trial.set_user_attr(st.INTERRUPTED_ATTR, True)
        self.study.tell(trial, state=TrialState.FAIL)
        self.say(f"trial {trial.number} {result.state}: {name}: {result.error} "
                 f"(log: {self.job.parent / name / 'search_trial.log'})")

    # ---- the whole search ---------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.children.stop_signal is None:
            self.say(f"{signal.Signals(signum).name}: no new trials; running ones save a "
                     f"checkpoint and stop (Ctrl-C again to stop them at once)")
        self.children.stop(signum)

    def run(self) -> SearchSummary:
        self.check_existing_folders()
        workers = [threading.Thread(target=self.worker, args=(slot,), daemon=True,
                                    name=f"search-worker-{slot}") for slot in range(self.workers)]
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored stays ignored
                    previous[sig] = signal.signal(sig, self._on_signal)
        try:
            for thread in workers:
                thread.start()
            for thread in workers:
                while thread.is_alive():
                    thread.join(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.fatal is not None:
            raise self.fatal
        return self.summary()

    def summary(self) -> SearchSummary:
        latest = self._latest()
        names = [name for name, _ in self.grid] if self.grid is not None else list(latest)
        out = SearchSummary(self.job.study_name, self.where, self.job.objective.metric,
                            self.job.objective.mode, stopped_by=self.children.stop_signal)
        for name in names:
            trial = latest.get(name)
            state = st.outcome(trial)
            out.counts[state] += 1
            if state == "failed":
                lost = (f"its worker was lost {st.MAX_RETRIES + 1} times"
                        if st.is_lost(trial) and st.retries_used(trial) >= st.MAX_RETRIES
                        else None)
                error = trial.user_attrs.get(st.ERROR_ATTR) or lost or read_run(
                    self.job.parent / name, self.job.objective.metric).error
                out.failures.append((name, error or "unknown error"))
        done = [latest[n] for n in names if st.outcome(latest.get(n)) == "finished"]
        if done:
            pick = max if self.job.objective.mode == "max" else min
            out.best = pick(done, key=lambda t: t.value)
        return out
