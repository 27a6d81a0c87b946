"""The Optuna study behind a search: its storage, sampler and pruner, and trial bookkeeping.

Each Optuna trial carries the name of its folder (user attr "folder"). A folder may
have several trials when a run was interrupted and continued; the one with the highest
number is the folder's current state, so earlier ones never count twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from torchstarter.errors import UserError
from torchstarter.search.space import Objective, SearchSpec

DEFAULT_STORAGE = "search.journal"
FOLDER_ATTR = "folder"
ERROR_ATTR = "error"
INTERRUPTED_ATTR = "interrupted"
METRIC_ATTR = "metric"
OPTUNA_DIRECTION = {"max": "maximize", "min": "minimize"}


def masked(url: str) -> str:
    """A storage URL fit for printing: no password."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def open_storage(parent: Path, storage: str | None) -> tuple[BaseStorage, str]:
    """A database URL, or a journal file (default: search.journal in the parent folder)."""
    if storage and "://" in storage:
        try:
            return optuna.storages.RDBStorage(storage), masked(storage)
        except ImportError as exc:
            raise UserError(f"--storage {masked(storage)}: no driver for this database ({exc}); "
                            f"install one, e.g. pip install psycopg2-binary (PostgreSQL) or "
                            f"pymysql (MySQL)") from None
        except Exception as exc:
            if type(exc).__module__.startswith("sqlalchemy") or isinstance(exc, ValueError):
                raise UserError(f"--storage {masked(storage)}: cannot open the database "
                                f"({str(exc).splitlines()[0]})") from None
            raise
    path = Path(storage) if storage else Path(parent) / DEFAULT_STORAGE
    if not path.parent.is_dir():
        raise UserError(f"--storage {path}: folder {path.parent} does not exist; create it or "
                        f"give another path")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path))), str(path)


def make_sampler(spec: SearchSpec) -> BaseSampler:
    if spec.method == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed)
    return optuna.samplers.RandomSampler(seed=spec.seed)  # grid trials use FixedValues


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


def open_study(storage: BaseStorage, study_name: str, spec: SearchSpec, objective: Objective,
               where: str) -> optuna.Study:
    """Create the study or join it; refuse to mix metrics in one study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = OPTUNA_DIRECTION[objective.mode]
    study = optuna.create_study(storage=storage, study_name=study_name, direction=direction,
                                sampler=make_sampler(spec), pruner=make_pruner(spec),
                                load_if_exists=True)
    recorded = study.user_attrs.get(METRIC_ATTR)
    if recorded is None:
        study.set_user_attr(METRIC_ATTR, objective.metric)
    elif recorded != objective.metric or study.direction.name.lower() != direction:
        raise UserError(f"{where}: study '{study_name}' optimizes {recorded} "
                        f"({study.direction.name.lower()}), not {objective.metric} ({direction}); "
                        f"keep its metric, or pass --study-name to start another study")
    return study


def ask_with_values(study: optuna.Study, storage: BaseStorage, values: Mapping[str, Any],
                    distributions: Mapping[str, BaseDistribution]) -> optuna.Trial:
    """A new trial of the study with exactly these values (the study's pruner still applies).

    A second Study object over the same storage samples them, so the shared sampler is
    never touched and no waiting-trial queue can hand the values to another worker.
    """
    pinned = optuna.Study(study.study_name, storage, sampler=FixedValues(values),
                          pruner=study.pruner)
    return pinned.ask(fixed_distributions=dict(distributions))


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
        return "failed"
    return "unfinished"
