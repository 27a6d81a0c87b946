"""search.json: which params to search, with which method, judged by which metric.

    {
        "method": "grid",
        "space": {"learning_rate": [1e-4, 1e-3, 1e-2]}
    }

A list is a set of values: the points of a grid, or categorical choices for random and
tpe. An object is a distribution: uniform, loguniform, int or categorical. Everything
is checked here, before a single trial starts, so a typo costs seconds, not a night.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from torchstarter.config.params import read_params_file
from torchstarter.errors import UserError

METHODS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "halving")
DIRECTIONS = {"maximize": "max", "max": "max", "minimize": "min", "min": "min"}
FILE_KEYS = ("method", "space", "n_trials", "metric", "direction", "pruner", "seed")
# Keys of each distribution object besides "type": (required, optional).
DISTRIBUTION_KEYS = {
    "uniform": (("low", "high"), ()),
    "loguniform": (("low", "high"), ()),
    "int": (("low", "high"), ("step", "log")),
    "categorical": (("choices",), ()),
}
# Params a search cannot vary, and why.
UNSEARCHABLE = {"task": "a search compares settings of one task",
                "num_threads": "search sets it from --jobs",
                "metric": "one search optimizes one metric; set 'metric' in search.json",
                "metric_mode": "set 'direction' in search.json"}

Scalar = None | bool | int | float | str


@dataclass(frozen=True)
class Dimension:
    """One searched key: a list of values, or a distribution to sample from."""

    kind: str  # "values" (a JSON list), "uniform", "loguniform", "int" or "categorical"
    choices: tuple[Scalar, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: int = 1
    log: bool = False

    def distribution(self) -> BaseDistribution:
        if self.kind in ("values", "categorical"):
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), step=self.step, log=self.log)
        return FloatDistribution(self.low, self.high, log=self.kind == "loguniform")

    def describe(self) -> Any:
        """The search.json form of this entry: what a study records and error lines show."""
        if self.kind == "values":
            return list(self.choices)
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        if self.kind == "int":
            extra = {"step": self.step} if self.step != 1 else {"log": True} if self.log else {}
            return {"type": "int", "low": int(self.low), "high": int(self.high), **extra}
        return {"type": self.kind, "low": self.low, "high": self.high}

    def examples(self) -> tuple[Scalar, ...]:
        """Values that stand for the whole range when checking them against the params schema."""
        if self.choices:
            return self.choices
        if self.kind == "int":
            return int(self.low), int(self.high)
        return self.low, self.high


@dataclass(frozen=True)
class SearchSpec:
    method: str
    space: dict[str, Dimension]
    source: str
    n_trials: int | None = None
    metric: str | None = None
    direction: str | None = None  # "max" or "min"
    pruner: str = "none"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass(frozen=True)
class Objective:
    """What a trial's value is, and what every child params.json gets besides its values."""

    metric: str
    mode: str  # "max" or "min"
    child_overrides: dict[str, Any]


def _scalars(items: Any, where: str) -> tuple[Scalar, ...]:
    if not isinstance(items, list) or not items:
        raise UserError(f"{where}: expected a non-empty list of values, e.g. [1e-4, 1e-3]")
    for item in items:
        if item is not None and not isinstance(item, (bool, int, float, str)):
            raise UserError(f"{where}: {json.dumps(item)} is not a number, string, true, "
                            f"false or null; list plain values only")
        if isinstance(item, float) and not math.isfinite(item):
            raise UserError(f"{where}: {item!r} is not a finite number")
    for i, item in enumerate(items):
        if any(item == other for other in items[:i]):  # 1, 1.0 and true count as equal
            raise UserError(f"{where}: {json.dumps(item)} is listed twice; list each value once")
    return tuple(items)


def _number(entry: Mapping[str, Any], key: str, where: str, integer: bool) -> float:
    value = entry[key]
    kind = "an integer" if integer else "a number"
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (integer and not isinstance(value, int)) or not math.isfinite(value)):
        raise UserError(f"{where}: '{key}' must be {kind}, got {json.dumps(value)}")
    return value


def _dimension(entry: Any, where: str) -> Dimension:
    if isinstance(entry, list):
        return Dimension("values", _scalars(entry, where))
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected a list of values or an object such as "
                        f'{{"type": "loguniform", "low": 1e-4, "high": 1e-1}}')
    kind = entry.get("type")
    if kind not in DISTRIBUTION_KEYS:
        raise UserError(f"{where}: 'type' must be one of {', '.join(DISTRIBUTION_KEYS)}, got "
                        f"{json.dumps(kind)}")
    required, optional = DISTRIBUTION_KEYS[kind]
    for key in required:
        if key not in entry:
            raise UserError(f"{where}: a {kind} distribution needs '{key}'")
    unknown = set(entry) - {"type", *required, *optional}
    if unknown:
        raise UserError(f"{where}: unknown key '{sorted(unknown)[0]}' for a {kind} distribution "
                        f"(allowed: {', '.join((*required, *optional))})")
    if kind == "categorical":
        return Dimension(kind, _scalars(entry["choices"], f"{where} choices"))
    integer = kind == "int"
    low, high = _number(entry, "low", where, integer), _number(entry, "high", where, integer)
    if low >= high:
        raise UserError(f"{where}: 'low' ({low}) must be below 'high' ({high})")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"{where}: 'log' must be true or false")
    if (kind == "loguniform" or log) and low <= 0:
        raise UserError(f"{where}: a log scale needs 'low' > 0, got {low}")
    step = entry.get("step", 1)
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise UserError(f"{where}: 'step' must be an integer >= 1")
    if log and step != 1:
        raise UserError(f"{where}: 'step' and 'log' cannot be combined; drop one")
    return Dimension(kind, low=low, high=high, step=step, log=log)


def _space(raw: Any, source: str) -> dict[str, Dimension]:
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{source}: 'space' must be an object of param name -> values, e.g. "
                        f'{{"learning_rate": [1e-4, 1e-3]}}')
    space = {}
    for key, entry in raw.items():
        if key in UNSEARCHABLE:
            raise UserError(f"{source}: '{key}' cannot be searched ({UNSEARCHABLE[key]})")
        space[key] = _dimension(entry, f"{source}: space '{key}'")
    return space


def _pruner(raw: Any, source: str) -> tuple[str, dict[str, Any]]:
    options: dict[str, Any] = {}
    if isinstance(raw, dict):
        options = {k: v for k, v in raw.items() if k != "type"}
        raw = raw.get("type")
    if raw not in PRUNERS:
        raise UserError(f"{source}: 'pruner' must be one of {', '.join(PRUNERS)} (or an "
                        f'object such as {{"type": "median", "n_startup_trials": 2}})')
    if raw == "none" and options:
        raise UserError(f"{source}: pruner 'none' takes no options")
    return raw, options


def parse_search(raw: Mapping[str, Any], source: str) -> SearchSpec:
    """Check a search.json object and turn it into a SearchSpec."""
    for key in raw:
        if key not in FILE_KEYS:
            close = difflib.get_close_matches(key, FILE_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(FILE_KEYS)}"
            raise UserError(f"{source}: unknown key '{key}' ({hint})")
    if "space" not in raw:
        raise UserError(f"{source}: missing 'space', the params to search, e.g. "
                        f'"space": {{"learning_rate": [1e-4, 1e-3, 1e-2]}}')
    space = _space(raw["space"], source)
    all_lists = all(d.kind == "values" for d in space.values())
    method = raw.get("method", "grid" if all_lists else "tpe")
    if method not in METHODS:
        raise UserError(f"{source}: 'method' must be one of {', '.join(METHODS)}, "
                        f"got {json.dumps(method)}")
    n_trials = raw.get("n_trials")
    if method == "grid":
        sampled = [k for k, d in space.items() if d.kind not in ("values", "categorical")]
        if sampled:
            raise UserError(f"{source}: space '{sampled[0]}' is a distribution, but a grid "
                            f"needs a list of values; list them, or use method random or tpe")
        if n_trials is not None:
            raise UserError(f"{source}: 'n_trials' is for random and tpe; a grid runs every "
                            f"point once, so remove it")
    elif isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise UserError(f"{source}: method {method} needs 'n_trials', a whole number >= 1 "
                        f"(how many trials to run)")
    metric = raw.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise UserError(f"{source}: 'metric' must be a metric name such as \"accuracy\" or "
                        f"\"loss\"")
    direction = raw.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        raise UserError(f"{source}: 'direction' must be maximize or minimize, got "
                        f"{json.dumps(direction)}")
    pruner, pruner_options = _pruner(raw.get("pruner", "none"), source)
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise UserError(f"{source}: 'seed' must be a whole number >= 0, or null")
    return SearchSpec(method, space, source, n_trials, metric,
                      DIRECTIONS[direction] if direction else None, pruner, pruner_options, seed)


def read_search_file(path: Path) -> SearchSpec:
    raw = read_params_file(path)  # the same JSON checks and messages as params.json
    return parse_search(raw, str(path))


def _flag_value(text: str) -> Scalar:
    text = text.strip()
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text
    return value if value is None or isinstance(value, (bool, int, float, str)) else text


def parse_grid_flags(pairs: Sequence[str]) -> dict[str, Dimension]:
    """--grid learning_rate=1e-4,1e-3,1e-2 (repeatable); values are read as JSON when they can."""
    raw: dict[str, list[Scalar]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise UserError(f"--grid {pair!r}: expected key=v1,v2,..., e.g. "
                            f"--grid learning_rate=1e-4,1e-3,1e-2")
        if key in raw:
            raise UserError(f"--grid: '{key}' is given twice; list all its values in one flag")
        raw[key] = [_flag_value(v) for v in text.split(",")]
    return _space(raw, "--grid")


def with_grid(spec: SearchSpec | None, grid: dict[str, Dimension]) -> SearchSpec:
    """--grid replaces the space and method of search.json; metric, direction and pruner stay."""
    if spec is None:
        return SearchSpec("grid", grid, "--grid")
    return replace(spec, method="grid", space=grid, n_trials=None, source="--grid")


def grid_points(spec: SearchSpec) -> list[dict[str, Scalar]]:
    """Every combination, first key slowest, in the order the values are listed."""
    keys = list(spec.space)
    lists = [spec.space[k].choices for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]


def parse_dimension(entry: Any, where: str) -> Dimension:
    """One space entry in its search.json form (a list or a distribution object)."""
    return _dimension(entry, where)


# Distributions a params field of each type can take; lists and categorical fit every type.
SAMPLED_KINDS = {int: ("int",), float: ("uniform", "loguniform", "int"), str: (), bool: ()}


def _check_kind(spec: SearchSpec, key: str, dim: Dimension, field_type: type) -> None:
    """A uniform draw on an integer param fails every trial: refuse it here instead."""
    if dim.kind in ("values", "categorical") or dim.kind in SAMPLED_KINDS.get(field_type, ()):
        return
    where = f"{spec.source}: space '{key}'"
    if field_type is int:
        raise UserError(f"{where}: '{key}' is an integer, but a {dim.kind} distribution draws "
                        f"fractions; use {{\"type\": \"int\", \"low\": {math.ceil(dim.low)}, "
                        f"\"high\": {math.floor(dim.high)}}}")
    kind = "true or false" if field_type is bool else "a string"
    article = "an" if dim.kind == "int" else "a"
    raise UserError(f"{where}: '{key}' is {kind}, so {article} {dim.kind} distribution cannot "
                    f"draw it; "
                    f"list its values instead, e.g. [...] or "
                    f'{{"type": "categorical", "choices": [...]}}')


def check_against_params(spec: SearchSpec, base_raw: Mapping[str, Any], base_path: Path
                         ) -> Objective:
    """Validate the base params, every searched value and the metric, before anything runs."""
    from torchstarter.tasks.registry import full_schema, resolve_params

    base_dir = Path(base_path).parent
    task, base = resolve_params(base_raw, str(base_path), base_dir)
    schema = full_schema(task)
    for key, dim in spec.space.items():
        if key in schema:
            _check_kind(spec, key, dim, schema[key].type)
        for value in dim.examples():
            resolve_params({**base_raw, key: value}, f"{spec.source} ('{key}': "
                           f"{json.dumps(value)})", base_dir)
    if spec.metric is None and spec.direction is None:
        return Objective(base.metric, base.metric_mode, {})
    metric = spec.metric or base.metric
    mode = spec.direction or ("min" if metric == "loss" else "max")
    overrides = {"metric": metric, "metric_mode": mode}
    resolve_params({**base_raw, **overrides}, f"{spec.source} (metric)", base_dir)
    return Objective(metric, mode, overrides)
