"""search.json and --grid: parsed into a space, checked against the params before any trial."""

import json
import math
import subprocess
import sys

import optuna
import pytest
from conftest import REPO, TINY
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import InMemoryStorage

from torchstarter.errors import UserError
from torchstarter.search.space import (
    Objective,
    check_against_params,
    grid_points,
    parse_grid_flags,
    parse_search,
    read_search_file,
    with_grid,
)
from torchstarter.search.study import make_sampler, open_study

TUTORIAL = REPO / "experiments" / "signs" / "learning_rate"


def test_the_tutorial_sweep_is_a_three_line_grid_over_the_base_model():
    text = (TUTORIAL / "search.json").read_text()
    assert len(text.strip().splitlines()) == 3
    spec = read_search_file(TUTORIAL / "search.json")
    assert spec.method == "grid"
    assert grid_points(spec) == [{"learning_rate": 1e-4}, {"learning_rate": 1e-3},
                                 {"learning_rate": 1e-2}]
    base = json.loads((TUTORIAL / "params.json").read_text())
    assert base == json.loads((REPO / "experiments/signs/base_model/params.json").read_text())
    objective = check_against_params(spec, base, TUTORIAL / "params.json")
    assert (objective.metric, objective.mode, objective.child_overrides) == ("accuracy", "max", {})


def test_grid_flag_reads_values_as_json_and_replaces_the_file_space():
    grid = parse_grid_flags(["learning_rate=1e-4,1e-3", "optimizer=adam,sgd",
                             "num_channels=8"])
    spec = with_grid(parse_search({"method": "tpe", "n_trials": 5, "metric": "loss",
                                   "space": {"dropout_rate": [0.1]}}, "search.json"), grid)
    assert spec.method == "grid" and spec.n_trials is None and spec.metric == "loss"
    points = grid_points(spec)
    assert points[0] == {"learning_rate": 1e-4, "optimizer": "adam", "num_channels": 8}
    assert [type(v) for v in points[0].values()] == [float, str, int]
    assert len(points) == 4 and points[1]["optimizer"] == "sgd"  # first key varies slowest


def test_distributions_become_optuna_distributions():
    spec = parse_search({"method": "tpe", "n_trials": 4, "space": {
        "learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
        "dropout_rate": {"type": "uniform", "low": 0.1, "high": 0.9},
        "num_channels": {"type": "int", "low": 8, "high": 64, "step": 8},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "batch_size": [16, 32]}}, "search.json")
    dists = {k: d.distribution() for k, d in spec.space.items()}
    assert dists["learning_rate"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["dropout_rate"] == FloatDistribution(0.1, 0.9)
    assert dists["num_channels"] == IntDistribution(8, 64, step=8)
    assert dists["optimizer"] == CategoricalDistribution(("adam", "sgd"))
    assert dists["batch_size"] == CategoricalDistribution((16, 32))


def test_a_space_of_distributions_defaults_to_tpe_and_needs_n_trials():
    with pytest.raises(UserError, match="method tpe needs 'n_trials'"):
        parse_search({"space": {"learning_rate": {"type": "loguniform", "low": 1e-4,
                                                  "high": 1e-1}}}, "search.json")


@pytest.mark.parametrize("raw, message", [
    ({"space": {"learning_rate": [1e-3]}, "metod": "grid"},
     "unknown key 'metod' (did you mean 'method'?)"),
    ({"method": "grid"}, "missing 'space'"),
    ({"space": {}}, "'space' must be an object"),
    ({"space": {"learning_rate": []}}, "space 'learning_rate': expected a non-empty list"),
    ({"space": {"learning_rate": [1e-3, 0.001]}}, "0.001 is listed twice"),
    ({"space": {"learning_rate": [[1e-3]]}}, "is not a number, string"),
    ({"space": {"learning_rate": 0.001}}, "expected a list of values or an object"),
    ({"method": "bayes", "space": {"learning_rate": [1e-3]}}, "'method' must be one of"),
    ({"method": "grid", "space": {"learning_rate": {"type": "uniform", "low": 0, "high": 1}}},
     "a grid needs a list of values"),
    ({"space": {"learning_rate": [1e-3]}, "n_trials": 3}, "'n_trials' is for random and tpe"),
    ({"method": "random", "n_trials": 0, "space": {"learning_rate": [1e-3]}},
     "method random needs 'n_trials'"),
    ({"method": "random", "n_trials": 2,
      "space": {"learning_rate": {"type": "gaussian", "low": 0, "high": 1}}},
     "'type' must be one of uniform, loguniform, int, categorical"),
    ({"method": "random", "n_trials": 2,
      "space": {"learning_rate": {"type": "uniform", "low": 0.1}}},
     "a uniform distribution needs 'high'"),
    ({"method": "random", "n_trials": 2,
      "space": {"learning_rate": {"type": "uniform", "low": 0.1, "high": 0.1}}},
     "'low' (0.1) must be below 'high' (0.1)"),
    ({"method": "random", "n_trials": 2,
      "space": {"learning_rate": {"type": "loguniform", "low": 0, "high": 0.1}}},
     "a log scale needs 'low' > 0"),
    ({"method": "random", "n_trials": 2,
      "space": {"num_channels": {"type": "int", "low": 8.5, "high": 64}}},
     "'low' must be an integer"),
    ({"method": "random", "n_trials": 2,
      "space": {"num_channels": {"type": "int", "low": 8, "high": 64, "stp": 8}}},
     "unknown key 'stp' for a int distribution"),
    ({"space": {"task": ["signs", "ner"]}}, "'task' cannot be searched"),
    ({"space": {"num_threads": [1, 2]}}, "'num_threads' cannot be searched"),
    ({"space": {"metric": ["accuracy", "loss"]}}, "'metric' cannot be searched (one search "
                                                  "optimizes one metric; set 'metric' in"),
    ({"space": {"metric_mode": ["max", "min"]}}, "'metric_mode' cannot be searched (set "
                                                 "'direction' in search.json)"),
    ({"space": {"learning_rate": [1e-3]}, "direction": "up"}, "'direction' must be maximize"),
    ({"space": {"learning_rate": [1e-3]}, "pruner": "hyperband"}, "'pruner' must be one of"),
])
def test_bad_search_json_names_the_file_and_the_fix(raw, message):
    with pytest.raises(UserError) as info:
        parse_search(raw, "P/search.json")
    assert str(info.value).startswith("P/search.json")
    assert message in str(info.value)


@pytest.mark.parametrize("flags, message", [
    (["learning_rate"], "expected key=v1,v2"),
    (["learning_rate="], "expected key=v1,v2"),
    (["learning_rate=1e-3", "learning_rate=1e-2"], "'learning_rate' is given twice"),
    (["learning_rate=1e-3,1e-3"], "listed twice"),
])
def test_bad_grid_flags_are_refused(flags, message):
    with pytest.raises(UserError, match=message):
        parse_grid_flags(flags)


@pytest.mark.parametrize("space, message", [
    ({"learnin_rate": [1e-3]}, "('learnin_rate': 0.001): unknown key 'learnin_rate' "
                               "(did you mean 'learning_rate'?)"),
    ({"learning_rate": [1e-3, 0]}, "('learning_rate': 0): key 'learning_rate': 0.0 is out of "
                                   "range"),
    ({"optimizer": ["adam", "rmsprop"]}, "('optimizer': \"rmsprop\"): key 'optimizer'"),
    ({"num_channels": [8, "wide"]}, "key 'num_channels': expected an integer"),
])
def test_searched_values_are_checked_against_the_task_params(space, message, tmp_path):
    spec = parse_search({"space": space}, "P/search.json")
    with pytest.raises(UserError) as info:
        check_against_params(spec, TINY, tmp_path / "params.json")
    assert str(info.value).startswith("P/search.json (")
    assert message in str(info.value)


def test_search_metric_is_validated_and_given_to_every_child(tmp_path):
    spec = parse_search({"space": {"learning_rate": [1e-3]}, "metric": "loss"}, "search.json")
    objective = check_against_params(spec, TINY, tmp_path / "params.json")
    assert objective.mode == "min"
    assert objective.child_overrides == {"metric": "loss", "metric_mode": "min"}
    spec = parse_search({"space": {"learning_rate": [1e-3]}, "metric": "f1"}, "search.json")
    with pytest.raises(UserError, match="'metric': 'f1' is not one of"):
        check_against_params(spec, TINY, tmp_path / "params.json")


scalars = st.one_of(st.integers(-5, 5), st.floats(-1, 1, allow_nan=False),
                    st.text("abc", min_size=1, max_size=3), st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                       st.lists(scalars, min_size=1, max_size=4, unique_by=repr), min_size=1))
def test_grid_is_the_cartesian_product_in_listed_order(space):
    space = {k: [v for i, v in enumerate(vs) if all(v != w for w in vs[:i])]
             for k, vs in space.items()}  # the parser refuses values that compare equal
    points = grid_points(parse_search({"space": space}, "search.json"))
    assert len(points) == math.prod(len(v) for v in space.values())
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)
    first_key = next(iter(space))
    assert [p[first_key] for p in points[:: len(points) // len(space[first_key])]] == \
        space[first_key]


def test_bad_search_input_exits_2_with_one_line_and_creates_nothing(tmp_path, sample_data):
    parent = tmp_path / "P"
    parent.mkdir()
    (parent / "params.json").write_text(json.dumps(TINY))
    (parent / "search.json").write_text(json.dumps({"space": {"learnin_rate": [1e-3]}}))
    result = subprocess.run([sys.executable, "-m", "torchstarter", "search", "--parent-dir",
                             str(parent), "--data-dir", str(sample_data)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "did you mean 'learning_rate'" in result.stderr
    assert sorted(p.name for p in parent.iterdir()) == ["params.json", "search.json"]


@pytest.mark.parametrize("key, distribution, message", [
    ("num_channels", {"type": "uniform", "low": 4, "high": 16},
     '\'num_channels\' is an integer, but a uniform distribution draws fractions; use '
     '{"type": "int", "low": 4, "high": 16}'),
    ("batch_size", {"type": "loguniform", "low": 7.5, "high": 64.5},
     '\'batch_size\' is an integer, but a loguniform distribution draws fractions; use '
     '{"type": "int", "low": 8, "high": 64}'),
    ("optimizer", {"type": "int", "low": 0, "high": 1},
     "'optimizer' is a string, so an int distribution cannot draw it; list its values"),
    ("augmentation", {"type": "uniform", "low": 0, "high": 1},
     "'augmentation' is true or false, so a uniform distribution"),
])
def test_a_distribution_that_does_not_fit_the_param_type_is_refused(key, distribution, message,
                                                                     tmp_path):
    spec = parse_search({"method": "random", "n_trials": 2, "space": {key: distribution}},
                        "P/search.json")
    with pytest.raises(UserError) as info:
        check_against_params(spec, TINY, tmp_path / "params.json")
    assert str(info.value).startswith(f"P/search.json: space '{key}': ")
    assert message in str(info.value)


def test_distributions_that_fit_the_param_type_are_accepted(tmp_path):
    spec = parse_search({"method": "random", "n_trials": 2, "space": {
        "num_channels": {"type": "int", "low": 4, "high": 16},
        "learning_rate": {"type": "int", "low": 1, "high": 2},  # ints are numbers too
        "dropout_rate": {"type": "uniform", "low": 0.1, "high": 0.5},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "augmentation": [True, False]}}, "search.json")
    assert check_against_params(spec, TINY, tmp_path / "params.json").metric == "accuracy"


def test_a_wrong_data_dir_exits_2_with_one_line_before_anything_is_created(tmp_path,
                                                                          sample_raw):
    parent = tmp_path / "P"
    parent.mkdir()
    (parent / "params.json").write_text(json.dumps(TINY))
    (parent / "search.json").write_text(json.dumps({"space": {"learning_rate": [1e-3]}}))
    result = subprocess.run([sys.executable, "-m", "torchstarter", "search", "--parent-dir",
                             str(parent), "--data-dir", str(sample_raw)],  # raw, not built
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "val_signs: folder not found" in result.stderr
    assert sorted(p.name for p in parent.iterdir()) == ["params.json", "search.json"]


# ---- the space a study began with ---------------------------------------------------------

OBJECTIVE = Objective("accuracy", "max", {})


def grid(**lists):
    return parse_search({"space": lists}, "P/search.json")


def sampled(**space):
    return parse_search({"method": "random", "n_trials": 3, "seed": 1, "space": space},
                        "P/search.json")


def test_a_grid_may_change_its_values_and_keeps_the_study_key_order():
    storage = InMemoryStorage()
    open_study(storage, "s", grid(learning_rate=[1e-4, 1e-3], num_channels=[4]), OBJECTIVE,
               "P")
    _, spec = open_study(storage, "s", grid(num_channels=[4, 8], learning_rate=[1e-4, 1e-2]),
                         OBJECTIVE, "P")
    assert list(spec.space) == ["learning_rate", "num_channels"]  # so folder names match
    assert grid_points(spec)[1] == {"learning_rate": 1e-4, "num_channels": 8}


@pytest.mark.parametrize("first, then, message", [
    (grid(learning_rate=[1e-3]), sampled(learning_rate=[1e-3, 1e-2]),
     "method was grid, now random"),
    (grid(learning_rate=[1e-3]), grid(learning_rate=[1e-3], num_channels=[4, 8]),
     "keys were learning_rate, now learning_rate, num_channels"),
    (sampled(dropout_rate=[0.3, 0.5]), sampled(dropout_rate=[0.3, 0.5, 0.7]),
     "'dropout_rate' was [0.3, 0.5], now [0.3, 0.5, 0.7]"),
    (sampled(learning_rate={"type": "loguniform", "low": 1e-4, "high": 1e-2}),
     sampled(learning_rate={"type": "loguniform", "low": 1e-4, "high": 1e-1}),
     "'learning_rate' was {\"type\": \"loguniform\", \"low\": 0.0001, \"high\": 0.01}"),
])
def test_a_study_refuses_another_space_and_points_to_a_new_parent_folder(first, then, message):
    storage = InMemoryStorage()
    open_study(storage, "s", first, OBJECTIVE, "P")
    with pytest.raises(UserError) as info:
        open_study(storage, "s", then, OBJECTIVE, "P")
    text = str(info.value)
    assert text.startswith("P/search.json: the space differs from the one study 's' was "
                           "started with (")
    assert message in text and text.endswith("or search in a new parent folder")


def test_a_study_refuses_another_metric_and_points_to_a_new_parent_folder():
    storage = InMemoryStorage()
    open_study(storage, "s", grid(learning_rate=[1e-3]), OBJECTIVE, "P")
    with pytest.raises(UserError, match=r"optimizes accuracy \(maximize\), not loss "
                                        r"\(minimize\); keep its metric, or search with loss "
                                        r"in a new parent folder$"):
        open_study(storage, "s", grid(learning_rate=[1e-3]), Objective("loss", "min", {}), "P")


def test_a_seeded_sampler_moves_on_by_the_trials_the_study_holds():
    spec = sampled(learning_rate={"type": "loguniform", "low": 1e-4, "high": 1e-1})
    distribution = spec.space["learning_rate"].distribution()

    def draws(trials_so_far, count=4):
        study = optuna.create_study(sampler=make_sampler(spec, trials_so_far))
        return [study.ask({"learning_rate": distribution}).params["learning_rate"]
                for _ in range(count)]

    assert draws(0) == draws(0)  # still reproducible
    assert not set(draws(0)) & set(draws(2))


def test_a_study_from_before_spaces_were_recorded_is_checked_against_its_trials():
    storage = InMemoryStorage()
    old = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    old.tell(old.ask({"dropout_rate": CategoricalDistribution((0.3, 0.5))}), 0.5)
    with pytest.raises(UserError, match=r"\(trial 0 has 'dropout_rate' from Categorical"):
        open_study(storage, "s", sampled(dropout_rate=[0.3, 0.5, 0.7]), OBJECTIVE, "P")
    open_study(storage, "s", sampled(dropout_rate=[0.3, 0.5]), OBJECTIVE, "P")
    with pytest.raises(UserError, match="'dropout_rate' was"):  # recorded now
        open_study(storage, "s", sampled(dropout_rate=[0.5, 0.3]), OBJECTIVE, "P")
