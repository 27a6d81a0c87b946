"""The statistics behind confidence intervals and run comparisons (utils/stats.py): the
bootstrap interval's coverage on a case with a known answer, paired differences, and
McNemar's test against hand-computed and textbook values. Deterministic by seed."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchstarter.utils import stats
from torchstarter.utils.stats import (
    bootstrap_interval,
    f1,
    mcnemar,
    paired_difference_interval,
    ratio,
)


def accuracy_parts(correct: np.ndarray) -> np.ndarray:
    return np.stack([correct.astype(float), np.ones(len(correct))], axis=1)


def test_the_95_percent_interval_covers_a_known_accuracy_95_percent_of_the_time():
    """Binomial case: a classifier right with probability 0.7 on 300 test examples. Over
    1,000 seeded test sets, the interval must contain 0.7 in 93-97% of them (the
    estimate's own standard error is 0.7 points)."""
    truth, n, sets = 0.7, 300, 1000
    rng = np.random.default_rng(2026)
    covered = 0
    for i in range(sets):
        correct = rng.random(n) < truth
        interval = bootstrap_interval(accuracy_parts(correct), ratio, resamples=1000, seed=i)
        covered += interval.low <= truth <= interval.high
    assert 0.93 <= covered / sets <= 0.97, covered / sets


def test_the_interval_narrows_with_more_examples_and_holds_the_estimate():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 400, 1600):
        correct = rng.random(n) < 0.8
        interval = bootstrap_interval(accuracy_parts(correct), ratio, seed=1)
        assert interval.low <= correct.mean() <= interval.high
        widths.append(interval.high - interval.low)
    # Width shrinks like 1/sqrt(n): each quadrupling about halves it.
    assert widths[0] / widths[1] == pytest.approx(2, rel=0.25)
    assert widths[1] / widths[2] == pytest.approx(2, rel=0.25)


def test_the_result_does_not_depend_on_how_resamples_are_chunked(monkeypatch):
    correct = np.random.default_rng(3).random(500) < 0.6
    whole = stats.resampled(accuracy_parts(correct), ratio, 300, seed=7)
    monkeypatch.setattr(stats, "CELLS_PER_CHUNK", 500 * 7)  # 7 resamples at a time
    chunked = stats.resampled(accuracy_parts(correct), ratio, 300, seed=7)
    np.testing.assert_array_equal(whole, chunked)


def test_f1_from_summed_counts_matches_its_definition():
    sums = np.array([[8.0, 2.0, 4.0], [0.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    np.testing.assert_allclose(f1(sums), [16 / 22, 0.0, 0.0])


def test_a_paired_difference_of_a_run_with_itself_is_exactly_zero():
    correct = np.random.default_rng(4).random(200) < 0.7
    parts = accuracy_parts(correct)
    interval = paired_difference_interval(parts, parts, ratio)
    assert interval.low == interval.high == 0.0


def test_a_paired_difference_sees_a_consistent_gain_that_unpaired_noise_would_hide():
    """B is right wherever A is, plus on 5% more examples: the paired interval excludes 0."""
    rng = np.random.default_rng(5)
    a = rng.random(1000) < 0.7
    b = a | (rng.random(1000) < 0.05)
    interval = paired_difference_interval(accuracy_parts(a), accuracy_parts(b), ratio)
    gain = b.mean() - a.mean()
    assert 0 < interval.low <= gain <= interval.high


def test_mcnemar_exact_for_few_discordant_pairs_and_chi_square_for_many():
    a = np.array([True] * 1 + [False] * 6 + [True] * 20)
    b = np.array([False] * 1 + [True] * 6 + [True] * 20)
    test = mcnemar(a, b)
    assert (test.only_a, test.only_b) == (1, 6) and test.method == "exact binomial"
    assert test.p_value == pytest.approx(2 * (1 + 7) / 2 ** 7)  # 0.125
    a = np.array([True] * 30 + [False] * 60)
    test = mcnemar(a, ~a)
    assert test.method.startswith("chi-square")
    assert test.p_value == pytest.approx(math.erfc(math.sqrt(29 ** 2 / 90 / 2)))
    assert test.p_value == pytest.approx(0.002237, abs=2e-6)  # chi-square table, 1 dof
    assert mcnemar(a, a).p_value == 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=120))
def test_mcnemar_is_symmetric_and_a_probability(pairs):
    a, b = (np.array(x) for x in zip(*pairs, strict=True))
    one, other = mcnemar(a, b), mcnemar(b, a)
    assert one.p_value == pytest.approx(other.p_value)
    assert 0.0 <= one.p_value <= 1.0
    assert (one.only_a, one.only_b) == (other.only_b, other.only_a)


def test_a_metric_with_nothing_counted_is_zero_as_the_engine_reports_it():
    """Precision of a tagger that predicts no entity: (0 hits, 0 predicted) everywhere."""
    parts = np.zeros((50, 2))
    interval = bootstrap_interval(parts, ratio)
    assert interval.low == interval.high == 0.0
    np.testing.assert_array_equal(ratio(np.array([[3.0, 4.0], [0.0, 0.0]])), [0.75, 0.0])
