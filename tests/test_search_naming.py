"""Trial folder names: readable, one safe path component, and never shared by two settings."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchstarter.search.naming import MAX_LENGTH, trial_folder_name

SAFE = re.compile(r"[A-Za-z0-9_=][A-Za-z0-9._=-]*")


@pytest.mark.parametrize("values, name", [
    ({"learning_rate": 0.001}, "learning_rate_0.001"),
    ({"learning_rate": 1e-4}, "learning_rate_0.0001"),
    ({"learning_rate": 1e-05}, "learning_rate_1e-05"),
    ({"learning_rate": 1e30}, "learning_rate_1e30"),
    ({"learning_rate": 0.001, "num_channels": 16}, "learning_rate_0.001-num_channels_16"),
    ({"optimizer": "adam", "augmentation": False}, "optimizer_adam-augmentation_false"),
    ({"early_stopping_patience": None}, "early_stopping_patience_null"),
])
def test_names_read_like_the_params(values, name):
    assert trial_folder_name(values) == name


@pytest.mark.parametrize("value", ["../../etc", "a/b", "..", "a b", "x\\y", "é",
                                   "a-b", "1", "true", "", "x" * 200])
def test_unsafe_or_ambiguous_values_get_a_safe_name_with_a_hash(value):
    name = trial_folder_name({"optimizer": value})
    assert SAFE.fullmatch(name) and ".." not in name and len(name) <= MAX_LENGTH
    assert re.search(r"-?h[0-9a-f]{10}$", name)


def test_a_string_that_reads_like_a_number_gets_its_own_folder():
    names = {trial_folder_name({"k": v}) for v in (1, "1", 1.0, True, "true", None, "null")}
    assert len(names) == 7


def test_long_names_are_cut_and_stay_distinct():
    a = trial_folder_name({"k": "x" * 100 + "a"})
    b = trial_folder_name({"k": "x" * 100 + "b"})
    assert len(a) == len(b) == MAX_LENGTH and a != b
    assert a.startswith("k_xxxx")


values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                   st.text(max_size=30), st.text("ab-_.1e", max_size=6))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["learning_rate", "a", "b_c", "x.y", "../k", "k-1", "K"]),
                min_size=1, max_size=3, unique=True), st.data())
def test_every_name_is_one_safe_bounded_component(keys, data):
    name = trial_folder_name({k: data.draw(values) for k in keys})
    assert SAFE.fullmatch(name), name
    assert ".." not in name and "/" not in name and len(name) <= MAX_LENGTH


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["lr", "a_b", "opt"]), min_size=1, max_size=3, unique=True),
       st.data())
def test_different_values_of_the_same_keys_never_share_a_folder(keys, data):
    first = {k: data.draw(values) for k in keys}
    second = {k: data.draw(values) for k in keys}
    same_values = json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert (trial_folder_name(first) == trial_folder_name(second)) == same_values
