import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchstarter.config import parse_overrides, validate_params
from torchstarter.config.params import read_params_file
from torchstarter.errors import UserError
from torchstarter.tasks.registry import full_schema, load_experiment, load_task, resolve_params

BASE = {"task": "signs", "learning_rate": 1e-3, "batch_size": 32, "num_epochs": 10}


def resolve(**changes):
    raw = {**BASE, **changes}
    return resolve_params({k: v for k, v in raw.items() if v is not ...}, "params.json")


def test_defaults_are_filled_and_best_metric_follows_the_task():
    _, params = resolve()
    assert params.seed == 230
    assert params.optimizer == "adam"
    assert params.metric == "accuracy" and params.metric_mode == "max"
    assert params.dropout_rate == 0.8 and params.num_channels == 32


def test_loss_as_metric_defaults_to_minimising():
    _, params = resolve(metric="loss")
    assert params.metric_mode == "min"


def test_unknown_key_suggests_the_closest_valid_key():
    with pytest.raises(UserError, match=r"params.json: unknown key 'learnig_rate' "
                                        r"\(did you mean 'learning_rate'\?\)"):
        resolve(learnig_rate=0.1)


@pytest.mark.parametrize("key, value, message", [
    ("batch_size", "32", "key 'batch_size': expected an integer"),
    ("batch_size", 2.5, "key 'batch_size': expected an integer"),
    ("learning_rate", "fast", "key 'learning_rate': expected a number"),
    ("augmentation", 1, "key 'augmentation': expected true or false"),
    ("num_epochs", True, "key 'num_epochs': expected int"),
    ("learning_rate", 0, "key 'learning_rate': 0.0 is out of range"),
    ("dropout_rate", 1.5, "key 'dropout_rate': 1.5 is out of range"),
    ("optimizer", "adagrad", "key 'optimizer': 'adagrad' is not one of 'adam', 'adamw', 'sgd'"),
    ("seed", None, "key 'seed': must not be null"),
    ("metric", "f1", "key 'metric': 'f1' is not one of loss, accuracy"),
])
def test_bad_values_name_the_file_and_the_key(key, value, message):
    with pytest.raises(UserError) as err:
        resolve(**{key: value})
    assert str(err.value).startswith("params.json: ")
    assert message in str(err.value)


def test_missing_required_key_is_named():
    with pytest.raises(UserError, match="missing required key 'learning_rate'"):
        resolve(learning_rate=...)


def test_integral_float_is_accepted_for_an_integer():
    _, params = resolve(num_epochs=3.0)
    assert params.num_epochs == 3 and isinstance(params.num_epochs, int)


def test_malformed_json_reports_line_and_column(tmp_path):
    path = tmp_path / "params.json"
    path.write_text('{\n  "task": "signs",\n  "learning_rate": 1e-3,,\n}')
    with pytest.raises(UserError, match=r"params.json:3:\d+: malformed JSON"):
        read_params_file(path)


def test_missing_params_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="params file not found"):
        load_experiment(tmp_path / "params.json")


def test_overrides_are_parsed_as_json_and_validated(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps(BASE))
    overrides = parse_overrides(["learning_rate=0.01", "optimizer=sgd", "augmentation=false"])
    _, params = load_experiment(path, overrides)
    assert params.learning_rate == 0.01 and params.optimizer == "sgd"
    assert params.augmentation is False
    with pytest.raises(UserError, match=r"\(with --set\): unknown key 'lr'"):
        load_experiment(path, parse_overrides(["lr=0.1"]))
    with pytest.raises(UserError, match="expected key=value"):
        parse_overrides(["learning_rate"])


def test_unknown_task_is_a_user_error():
    with pytest.raises(UserError, match="unknown task 'no_such_task'"):
        resolve(task="no_such_task")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=5)
keys = st.sampled_from(sorted(full_schema(load_task("signs")))) | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=8))
def test_any_params_dict_gives_params_or_a_user_error(raw):
    schema = full_schema(load_task("signs"))
    try:
        params = validate_params({**BASE, **raw}, schema, "params.json")
    except UserError as exc:
        assert str(exc).startswith("params.json: ")
        return
    assert set(params) == set(schema)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_file_content_gives_a_dict_or_a_user_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("p") / "params.json"
    path.write_text(text, encoding="utf-8")
    try:
        assert isinstance(read_params_file(path), dict)
    except UserError as exc:
        assert str(path) in str(exc)


def test_a_params_file_with_a_utf8_byte_order_mark_reads_like_one_without(tmp_path):
    from torchstarter.config.params import read_params_file

    path = tmp_path / "params.json"
    path.write_bytes(b'\xef\xbb\xbf{"task": "signs", "learning_rate": 0.001}')
    assert read_params_file(path) == {"task": "signs", "learning_rate": 0.001}


def test_a_key_given_twice_in_a_nested_object_is_refused_too(tmp_path):
    from torchstarter.config.params import read_params_file
    from torchstarter.errors import UserError

    path = tmp_path / "search.json"
    path.write_text('{"space": {\n "lr": [1, 2],\n "lr": [3]}}')
    with pytest.raises(UserError, match=r"search.json:3: key 'lr' is given twice"):
        read_params_file(path)


@pytest.mark.parametrize("text, line", [
    ('{"a": 1,\n"b": {"a": 5},\n"a": 2}', 3),  # the same key inside a nested object first
    ('{"metric": "lr",\n "x": 1,\n "lr": 1,\n "lr": 2}', 4),  # the key as a value first
    ('{"space": {\n "a": {"low": 1},\n "b": {"low": 2,\n  "high": 3,\n  "low": 4}}}', 5),
    ('{"t": "x",\n "\\u00e9": 1,\n "y": 2,\n "\u00e9": 3}', 4),  # escaped, then written out
    ('{"a": "x\u2028y",\n"a": 2}', 2),  # U+2028 inside a string is no line break in JSON
])
def test_a_duplicate_key_is_reported_at_its_second_line(tmp_path, text, line):
    path = tmp_path / "params.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=rf"params.json:{line}: key .* is given twice"):
        read_params_file(path)
