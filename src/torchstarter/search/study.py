"""The Optuna study behind a search: its storage, sampler and pruner, and trial bookkeeping.

Each Optuna trial carries the name of its folder (user attr "folder"). A folder may
have several trials when a run was interrupted and continued; the one with the highest
number is the folder's current state, so earlier ones never count twice.

Grid trials register no Optuna params: Optuna refuses a categorical param whose list
of choices changes within a study, and a grid may gain values between two runs. Their
values are a user attr ("values") instead, which every trial carries. The study also
records its method and space, so a rerun with another space is refused rather than
counted together with trials it never asked for.

A trial whose worker was lost (killed, its machine gone) is found in one of two ways:
its folder's claim is free while the trial still says RUNNING (the kernel dropped the
dead process's lock), or, on a database, Optuna's heartbeat stops. Either way Optuna's
RetryHeartbeatStaleTrialCallback closes it as FAIL and queues a WAITING copy that names
the failed one; the worker that claims the folder next takes that copy and continues the
run from the folder's last checkpoint. Optuna's Study.ask() would hand a waiting copy to
whichever worker asks first, for any folder, so every ask here goes through FolderStudy,
which takes only the copy it is given.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.distributions import BaseDistribution
from optuna.exceptions import (
    ExperimentalWarning,
    StorageInternalError,
    UpdateFinishedTrialError,
)
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from torchstarter.errors import UserError
from torchstarter.search.space import Objective, SearchSpec, parse_dimension

DEFAULT_STORAGE = "search.journal"
FOLDER_ATTR = "folder"
ERROR_ATTR = "error"
INTERRUPTED_ATTR = "interrupted"
METRIC_ATTR = "metric"
SPACE_ATTR = "search_space"  # {"method": ..., "space": {key: its search.json form}}
VALUES_ATTR = "values"  # the trial's exact values; grid trials register no Optuna params
OPTUNA_DIRECTION = {"max": "maximize", "min": "minimize"}
HEARTBEAT_S = 60  # database storage: a trial without a heartbeat for 2x this is lost
CONNECT_TIMEOUT_S = 5  # an unreachable database is one line after this, not a hang
TABLE_RACE_TRIES = 5  # new database: attempts at creating Optuna's tables (see _open_database)
# A database that drops or refuses connections for a while (restart, network): waited out.
# Optuna hands some of them on as StorageInternalError (see is_outage).
_CONNECTION_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
DATABASE_ERRORS = (*_CONNECTION_ERRORS, StorageInternalError)
DB_PATIENCE_S = 300  # a database away for longer stops the search (one line)
MAX_RETRIES = 3  # a trial that loses its worker this many times is failed for good


def _quiet_optuna() -> None:
    """Our asks run outside Study.optimize, on purpose (see the module docstring), and the
    heartbeat and retry helpers are marked experimental: neither warning is the user's."""
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
    warnings.filterwarnings("ignore", category=ExperimentalWarning)


def _retry() -> RetryHeartbeatStaleTrialCallback:
    return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)


def masked(url: str) -> str:
    """A storage URL fit for printing: no password."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def open_storage(parent: Path, storage: str | None,
                 heartbeat: int | None = HEARTBEAT_S) -> tuple[BaseStorage, str]:
    """A database URL, or a journal file (default: search.journal in the parent folder).

    A database gets Optuna's heartbeat every `heartbeat` seconds (None: none) and the
    retry callback; a journal file has no heartbeat, and the folder claims find lost
    trials there (see the module docstring).
    """
    _quiet_optuna()
    if storage and "://" in storage:
        return _open_database(storage, heartbeat), masked(storage)
    path = Path(storage) if storage else Path(parent) / DEFAULT_STORAGE
    if not path.parent.is_dir():
        raise UserError(f"--storage {path}: folder {path.parent} does not exist; create it or "
                        f"give another path")
    if path.is_dir():
        raise UserError(f"--storage {path}: is a folder; give the journal file's path, e.g. "
                        f"{path / DEFAULT_STORAGE}, or a database URL")
    if path.exists() and not _looks_like_journal(path):
        raise UserError(f"--storage {path}: not an Optuna journal file (its first line is not "
                        f"an Optuna record); give a new file's path or the journal of a search")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path))), str(path)


def _open_database(url: str, heartbeat: int | None) -> BaseStorage:
    """Optuna's RDBStorage; workers that start together on a new database race to create
    its tables, and the losers' IntegrityError only means the tables now exist: try again."""
    # Drivers that take connect_timeout (seconds); others keep their own default.
    scheme = url.split("://", 1)[0]
    known = scheme in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2", "mysql",
                       "mysql+pymysql", "mysql+mysqldb")
    timeout = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}} if known else {}
    for attempt in range(TABLE_RACE_TRIES):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=timeout, heartbeat_interval=heartbeat,
                heartbeat_stale_trial_callback=_retry() if heartbeat else None)
        except ImportError as exc:
            raise UserError(f"--storage {masked(url)}: no driver for this database ({exc}); "
                            f"install one, e.g. pip install 'psycopg[binary]' (PostgreSQL) or "
                            f"pymysql (MySQL)") from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            if attempt + 1 < TABLE_RACE_TRIES and "already exists" in str(exc):
                time.sleep(0.2 * (attempt + 1))
                continue
            raise UserError(f"--storage {masked(url)}: {_one_line(exc)}; is this database "
                            f"Optuna's? Give a new or an Optuna database") from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError, RuntimeError, TypeError) as exc:
            raise UserError(f"--storage {masked(url)}: cannot open the database "
                            f"({_one_line(exc)}); check the URL, the server and the "
                            f"credentials") from None
    raise AssertionError("unreachable")


def _one_line(exc: Exception) -> str:
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def _looks_like_journal(path: Path) -> bool:
    """An empty file, or one whose first line is a record of Optuna's journal (a JSON object
    with an op_code): appending to anything else would damage a file of the user's."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 20)
    except OSError as exc:
        raise UserError(f"--storage {path}: cannot read it ({exc.strerror}); give a readable "
                        f"journal file") from None
    if not first.strip():
        return True
    try:
        record = json.loads(first)
    except (ValueError, RecursionError):  # ValueError includes bytes that are not UTF-8
        return False
    return isinstance(record, dict) and "op_code" in record


def make_sampler(spec: SearchSpec, trials_so_far: int = 0) -> BaseSampler:
    """The sampler of random and tpe; a seeded one continues where the study left off.

    Optuna's seeded samplers draw the same sequence every time they are built, so a
    rerun would propose the earlier trials' values again: the seed moves on by the
    number of trials the study already holds.
    """
    seed = None if spec.seed is None else spec.seed + trials_so_far
    if spec.method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)  # grid trials use FixedValues


def make_pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    pruners = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
               "halving": optuna.pruners.SuccessiveHalvingPruner}
    try:
        return pruners[spec.pruner](**spec.pruner_options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{spec.source}: pruner {spec.pruner}: {exc}") from None


class FixedValues(BaseSampler):
    """A sampler that returns given values: a grid point, or a trial being continued."""

    def __init__(self, values: Mapping[str, Any]):
        self.values = dict(values)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.values[param_name]


class FolderStudy(optuna.Study):
    """A Study whose ask() takes no queued trial but the one it is given (see above)."""

    def __init__(self, study_name: str, storage: BaseStorage, sampler: BaseSampler,
                 pruner: optuna.pruners.BasePruner, queued: FrozenTrial | None = None):
        super().__init__(study_name, storage, sampler=sampler, pruner=pruner)
        self._queued = queued

    def _pop_waiting_trial_id(self) -> int | None:  # Study.ask() calls it first
        queued, self._queued = self._queued, None
        if queued is None:
            return None
        try:
            taken = self._storage.set_trial_state_values(queued._trial_id,
                                                         state=TrialState.RUNNING)
        except UpdateFinishedTrialError:
            taken = False
        return queued._trial_id if taken else None  # taken meanwhile: a new trial


def open_study(storage: BaseStorage, study_name: str, spec: SearchSpec, objective: Objective,
               where: str, own_storage: bool = True) -> tuple[optuna.Study, SearchSpec]:
    """Create the study or join it; refuse to mix metrics or spaces in one study.

    Returns the study and the spec with its keys in the study's order, so that trial
    folder names stay the same when only the order of the keys changed.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = OPTUNA_DIRECTION[objective.mode]
    study = optuna.create_study(storage=storage, study_name=study_name, direction=direction,
                                pruner=make_pruner(spec), load_if_exists=True)
    elsewhere = ("a new parent folder" if own_storage else
                 f"a new parent folder with a study name other than '{study_name}' "
                 f"(--study-name)")
    recorded = study.user_attrs.get(METRIC_ATTR)
    if recorded is None:
        study.set_user_attr(METRIC_ATTR, objective.metric)
    elif recorded != objective.metric or study.direction.name.lower() != direction:
        raise UserError(f"{where}: study '{study_name}' optimizes {recorded} "
                        f"({study.direction.name.lower()}), not {objective.metric} ({direction}); "
                        f"keep its metric, or search with {objective.metric} in {elsewhere}")
    spec = _same_space(study, spec, elsewhere)
    sampler = make_sampler(spec, len(study.get_trials(deepcopy=False)))
    return FolderStudy(study_name, storage, sampler, study.pruner), spec


def space_record(spec: SearchSpec) -> dict[str, Any]:
    return {"method": spec.method, "space": {k: d.describe() for k, d in spec.space.items()}}


def space_changes(recorded: Mapping[str, Any], spec: SearchSpec) -> list[str]:
    """How spec differs from the space a study began with; a grid may change its values."""
    old_space = recorded.get("space", {})
    if recorded.get("method") != spec.method:
        return [f"method was {recorded.get('method')}, now {spec.method}"]
    if set(old_space) != set(spec.space):
        return [f"keys were {', '.join(old_space)}, now {', '.join(spec.space)}"]
    if spec.method == "grid":
        return []  # new values are new folders; finished ones are reused
    changes = []
    for key, dim in spec.space.items():
        old = parse_dimension(old_space[key], f"study space '{key}'")
        if old.distribution() != dim.distribution():
            changes.append(f"'{key}' was {json.dumps(old_space[key])}, "
                           f"now {json.dumps(dim.describe())}")
    return changes


def _changes_from_trials(study: optuna.Study, spec: SearchSpec) -> list[str]:
    """For a study without a recorded space: the params its trials registered."""
    wanted = {k: d.distribution() for k, d in spec.space.items()}
    for trial in study.get_trials(deepcopy=False):
        for key, distribution in trial.distributions.items():
            if wanted.get(key) != distribution:
                return [f"trial {trial.number} has '{key}' from {distribution}"]
    return []


def _same_space(study: optuna.Study, spec: SearchSpec, elsewhere: str) -> SearchSpec:
    recorded = study.user_attrs.get(SPACE_ATTR)
    if recorded is None:  # a new study, or one from before spaces were recorded
        changes = [] if spec.method == "grid" else _changes_from_trials(study, spec)
        if not changes:
            study.set_user_attr(SPACE_ATTR, space_record(spec))
            return spec
    else:
        changes = space_changes(recorded, spec)
    if changes:
        raise UserError(f"{spec.source}: the space differs from the one study "
                        f"'{study.study_name}' was started with ({'; '.join(changes)}); restore "
                        f"it, or search in {elsewhere}")
    return replace(spec, space={k: spec.space[k] for k in recorded["space"]})


def trial_values(trial: FrozenTrial) -> dict[str, Any]:
    """The values a trial was run with (grid trials keep them in a user attr)."""
    values = trial.user_attrs.get(VALUES_ATTR)
    return dict(values) if isinstance(values, dict) else dict(trial.params)


def ask_with_values(study: optuna.Study, storage: BaseStorage, values: Mapping[str, Any],
                    distributions: Mapping[str, BaseDistribution],
                    queued: FrozenTrial | None = None) -> optuna.Trial:
    """A trial of the study with exactly these values: the queued retry when given, else
    a new one. A second Study object over the same storage samples them, so the shared
    sampler is never touched; the study's pruner still applies."""
    pinned = FolderStudy(study.study_name, storage, FixedValues(values), study.pruner, queued)
    trial = pinned.ask(fixed_distributions=dict(distributions))
    Heartbeat(storage, trial).beat()  # a taken retry is RUNNING from now on: show it alive
    return trial


def retire_lost(study: optuna.Study, storage: BaseStorage, trial: FrozenTrial) -> None:
    """Close a RUNNING trial whose worker is gone as FAIL and queue its retry, as Optuna's
    heartbeat check does (a no-op when another worker has just done it)."""
    try:
        failed = storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        return
    if failed:
        _retry()(study, storage.get_trial(trial._trial_id))


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's heartbeat check: trials silent for the grace period fail and are queued."""
    optuna.storages.fail_stale_trials(study)


def retry_of(trial: FrozenTrial) -> int | None:
    """The trial this one retries, when its worker was lost."""
    return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def retries_used(trial: FrozenTrial) -> int:
    return len(RetryHeartbeatStaleTrialCallback.retry_history(trial))


def is_lost(trial: FrozenTrial) -> bool:
    """Failed with no error of its own: its worker was lost (a run that fails says why)."""
    return (trial.state == TrialState.FAIL and ERROR_ATTR not in trial.user_attrs
            and not trial.user_attrs.get(INTERRUPTED_ATTR))


class Outage:
    """Waits out a database that is briefly away, for up to DB_PATIENCE_S at a stretch:
    `with outage.waiting_out("what") as up:` runs its body; a connection error ends it
    with up False (the caller retries), and is said once per outage."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.since: float | None = None

    @contextmanager
    def waiting_out(self, doing: str) -> Iterator[_Up]:
        up = _Up()
        try:
            yield up
        except DATABASE_ERRORS as exc:
            if not is_outage(exc):
                raise
            up.value = False
            now = time.monotonic()
            if self.since is None:
                self.since = now
                self.say(f"the database is not answering while {doing} "
                         f"({_one_line(outage_cause(exc))[:200]}); waiting for it up to "
                         f"{DB_PATIENCE_S} s")
            elif now - self.since > DB_PATIENCE_S:
                raise UserError(f"the study's database did not answer for {DB_PATIENCE_S} s "
                                f"while {doing}; rerun the search once it is back (finished "
                                f"trials keep their folders)") from None
            return
        if self.since is not None:
            self.since = None
            self.say("the database answers again")


def outage_cause(exc: BaseException) -> BaseException | None:
    """The connection error behind exc, if it is one (Optuna may wrap it)."""
    while exc is not None and not isinstance(exc, _CONNECTION_ERRORS):
        exc = exc.__cause__
    return exc


def is_outage(exc: BaseException) -> bool:
    return outage_cause(exc) is not None


class _Up:
    value = True

    def __bool__(self) -> bool:
        return self.value


class Heartbeat:
    """Records a running trial's heartbeat at most once per interval (database storage
    with a heartbeat only). A failed write is said once and retried: the grace period
    is there for short outages."""

    def __init__(self, storage: BaseStorage, trial: optuna.Trial):
        self.storage, self.trial_id = storage, trial._trial_id
        # Only database storage has one (a journal file has no get_heartbeat_interval).
        self.interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.next_at = 0.0
        self.error: str | None = None

    def beat(self) -> str | None:
        """Returns a line to say when a write failed for the first time."""
        if self.interval is None or time.monotonic() < self.next_at:
            return None
        try:
            self.storage.record_heartbeat(self.trial_id)
        except Exception as exc:  # the database is away: try again on the next poll
            first, self.error = self.error is None, str(exc).splitlines()[0]
            return f"heartbeat not recorded ({self.error}); retrying" if first else None
        self.next_at = time.monotonic() + self.interval
        self.error = None
        return None


def latest_by_folder(trials: Iterable[FrozenTrial]) -> dict[str, FrozenTrial]:
    latest: dict[str, FrozenTrial] = {}
    for trial in trials:
        folder = trial.user_attrs.get(FOLDER_ATTR)
        if folder is not None and (folder not in latest or trial.number > latest[folder].number):
            latest[folder] = trial
    return latest


def outcome(trial: FrozenTrial | None) -> str:
    """finished, pruned or failed (all final), or unfinished (to run or being run)."""
    if trial is None:
        return "unfinished"
    if trial.state == TrialState.COMPLETE:
        return "finished"
    if trial.state == TrialState.PRUNED:
        return "pruned"
    if trial.state == TrialState.FAIL and not trial.user_attrs.get(INTERRUPTED_ATTR):
        return "failed"  # including a trial whose worker was lost MAX_RETRIES times
    return "unfinished"  # running, interrupted, or a lost trial's queued retry
