"""Entity-level NER counts: the CoNLL reading of BIO, exact over batches, equal to seqeval."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from torchstarter.tasks.ner.entities import (
    TagScheme,
    entity_counts,
    per_type_report,
    prf,
    spans,
)

TAGS = ["O", "B-per", "I-per", "B-geo", "I-geo", "B-org-x", "I-org-x"]
SCHEME = TagScheme(TAGS)
INDEX = {tag: i for i, tag in enumerate(TAGS)}
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def encode(rows: list[list[str]], width: int | None = None,
           pad: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Tag strings -> padded [B, T] ids and the real-token mask."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor([INDEX[t] for t in row], dtype=torch.long)
        mask[i, :len(row)] = True
    return ids, mask


def count(gold: list[list[str]], pred: list[list[str]]) -> list[float]:
    gold_ids, mask = encode(gold)
    pred_ids, _ = encode(pred)
    return entity_counts(pred_ids, gold_ids, mask, SCHEME).tolist()


def counts_from_spans(gold: list[list[str]], pred: list[list[str]]) -> list[float]:
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, pred, strict=True):
        gold_spans, pred_spans = set(spans(g)), set(spans(p))
        tp += len(gold_spans & pred_spans)
        n_pred += len(pred_spans)
        n_gold += len(gold_spans)
    return [float(tp), float(n_pred), float(n_gold)]


@st.composite
def tagged_batches(draw: st.DrawFn, max_rows: int = 6,
                   max_len: int = 14) -> tuple[list[list[str]], list[list[str]]]:
    """Gold sentences of random lengths, and predictions that mostly copy them."""
    tag = st.sampled_from(TAGS)
    gold = draw(st.lists(st.lists(tag, max_size=max_len), min_size=1, max_size=max_rows))
    pred = [[draw(tag) if draw(st.integers(0, 3)) == 0 else t for t in row] for row in gold]
    return gold, pred


@st.composite
def padded(draw: st.DrawFn, rows: list[list[str]], width: int) -> torch.Tensor:
    """Ids padded with arbitrary values, in range or not, behind each sentence."""
    ids, mask = encode(rows, width)
    noise = draw(st.lists(st.integers(-5, 3 * len(TAGS)), min_size=ids.numel(),
                          max_size=ids.numel()))
    return torch.where(mask, ids, torch.tensor(noise, dtype=torch.long).view_as(ids))


# --- the CoNLL reading of BIO, by hand ----------------------------------------------------

def test_i_after_o_or_at_sentence_start_starts_an_entity():
    assert spans(["O", "I-per", "I-per"]) == [("per", 1, 3)]
    assert spans(["I-geo", "O"]) == [("geo", 0, 1)]
    # So I-per I-per is the same entity as B-per I-per, and scores as a hit.
    assert count([["B-per", "I-per", "O"]], [["I-per", "I-per", "O"]]) == [1.0, 1.0, 1.0]


def test_i_of_another_type_after_b_splits_into_two_entities():
    assert spans(["B-per", "I-geo", "I-geo"]) == [("per", 0, 1), ("geo", 1, 3)]
    assert count([["B-per", "I-per", "I-per"]], [["B-per", "I-geo", "I-geo"]]) == [0.0, 2.0, 1.0]


def test_b_after_b_of_the_same_type_is_two_entities():
    assert spans(["B-per", "B-per", "I-per"]) == [("per", 0, 1), ("per", 1, 3)]
    assert count([["B-per", "B-per", "I-per"]], [["B-per", "I-per", "I-per"]]) == [0.0, 1.0, 2.0]


def test_entity_at_the_sentence_end_ends_at_the_last_token():
    assert spans(["O", "B-org-x", "I-org-x"]) == [("org-x", 1, 3)]
    assert count([["O", "B-geo", "I-geo"]], [["O", "B-geo", "I-geo"]]) == [1.0, 1.0, 1.0]


def test_entity_open_at_the_last_real_token_is_not_extended_by_padding():
    gold, mask = encode([["O", "B-geo", "I-geo"], ["B-per"]], width=5)
    pred = gold.clone()
    pred[:, 3:] = INDEX["I-geo"]  # padding that would continue the geo entity if read
    pred[1, 1:] = INDEX["I-per"]
    assert entity_counts(pred, gold, mask, SCHEME).tolist() == [2.0, 2.0, 2.0]


def test_all_o_sentence_has_no_entities():
    assert spans(["O", "O", "O"]) == []
    assert spans([]) == []
    assert count([["O", "O"]], [["O", "O"]]) == [0.0, 0.0, 0.0]


def test_padding_with_arbitrary_ids_changes_no_count():
    gold_rows = [["B-per", "I-per", "O", "I-geo"], ["B-org-x"], []]
    pred_rows = [["B-per", "O", "O", "B-geo"], ["I-org-x"], []]
    expected = count(gold_rows, pred_rows)
    gen = torch.Generator().manual_seed(0)
    for extra in (1, 3, 8):
        gold, mask = encode(gold_rows, width=4 + extra)
        pred, _ = encode(pred_rows, width=4 + extra)
        noise = torch.randint(-3, 40, gold.shape, generator=gen)
        gold, pred = torch.where(mask, gold, noise), torch.where(mask, pred, noise.flip(0))
        assert entity_counts(pred, gold, mask, SCHEME).tolist() == expected


def test_padding_is_ignored_when_tag_id_zero_is_not_o():
    tags = ["B-per", "I-per", "O"]
    scheme = TagScheme(tags)
    gold = torch.tensor([[0, 1, 2, -1, 0], [2, 0, 1, 7, 1]])  # rows end at 3 and 3
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, False, False]])
    pred = torch.tensor([[0, 1, 2, 0, 1], [2, 0, 1, 1, 0]])
    assert entity_counts(pred, gold, mask, scheme).tolist() == [2.0, 2.0, 2.0]
    pred[1, 2] = 2  # truncate the second entity
    assert entity_counts(pred, gold, mask, scheme).tolist() == [1.0, 2.0, 2.0]


def test_all_o_prediction_gives_zero_precision_and_recall_without_division_errors():
    tp, n_pred, n_gold = count([["B-per", "O", "B-geo"]], [["O", "O", "O"]])
    assert (tp, n_pred, n_gold) == (0.0, 0.0, 2.0)
    assert prf(tp, n_pred, n_gold) == (0.0, 0.0, 0.0)
    assert prf(0.0, 0.0, 0.0) == (0.0, 0.0, 0.0)
    assert prf(1.0, 2.0, 4.0) == pytest.approx((0.5, 0.25, 1 / 3))


def test_counts_are_float64_on_the_inputs_device():
    ids, mask = encode([["B-per", "I-per"]])
    result = entity_counts(ids, ids, mask, SCHEME)
    assert result.dtype == torch.float64 and result.shape == (3,)
    assert result.device == torch.device("cpu")


def test_entity_counts_never_reads_values_back_to_the_host():
    # On the meta device there are no values: any .item() or data-dependent Python
    # branch would raise, so passing here proves the counts stay on the device.
    ids = torch.zeros(4, 6, dtype=torch.long, device="meta")
    mask = torch.ones(4, 6, dtype=torch.bool, device="meta")
    result = entity_counts(ids, ids, mask, SCHEME)
    assert result.device.type == "meta" and result.shape == (3,)


def test_mismatched_shapes_are_refused():
    ids, mask = encode([["B-per", "O"]])
    with pytest.raises(ValueError, match="shape"):
        entity_counts(ids, ids[:, :1], mask, SCHEME)
    with pytest.raises(ValueError, match="shape"):
        entity_counts(ids[0], ids[0], mask[0], SCHEME)


# --- the tag scheme ------------------------------------------------------------------------

def test_tag_scheme_tensors_describe_each_tag_id():
    assert SCHEME.type_names == ["per", "geo", "org-x"]
    assert SCHEME.begins.tolist() == [False, True, False, True, False, True, False]
    assert SCHEME.insides.tolist() == [False, False, True, False, True, False, True]
    assert SCHEME.type_ids.tolist() == [-1, 0, 0, 1, 1, 2, 2]
    assert SCHEME.type_ids.dtype == torch.long


def test_tag_scheme_copies_are_cached_per_device():
    on_meta = SCHEME.to("meta")
    assert on_meta.type_ids.device.type == "meta" and on_meta.type_names == SCHEME.type_names
    assert SCHEME.to(torch.device("meta")) is on_meta
    assert SCHEME.to("cpu") is SCHEME and on_meta.to("cpu") is SCHEME


@pytest.mark.parametrize("bad", ["S-per", "E-per", "B-", "per", "b-per", "", "B_per"])
def test_non_bio_tags_are_refused_naming_the_tag(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        TagScheme(["O", "B-per", bad])
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        spans(["O", bad])


def test_duplicate_or_empty_tag_lists_are_refused():
    with pytest.raises(ValueError, match="B-per"):
        TagScheme(["O", "B-per", "B-per"])
    with pytest.raises(ValueError):
        TagScheme([])


# --- agreement with seqeval and with spans(), on random batches ----------------------------

@PROPERTY
@given(tagged_batches())
def test_spans_match_seqeval_get_entities(batch):
    for row in [*batch[0], *batch[1]]:
        theirs = [(kind, start, end + 1) for kind, start, end in get_entities(list(row))]
        assert spans(row) == theirs


@PROPERTY
@given(tagged_batches(), st.data())
def test_entity_counts_match_counts_from_spans_with_arbitrary_padding(batch, data):
    gold_rows, pred_rows = batch
    width = max(len(r) for r in gold_rows) + data.draw(st.integers(0, 3))
    gold = data.draw(padded(gold_rows, width))
    pred = data.draw(padded(pred_rows, width))
    _, mask = encode(gold_rows, width)
    assert entity_counts(pred, gold, mask, SCHEME).tolist() == counts_from_spans(gold_rows,
                                                                                 pred_rows)


@PROPERTY
@given(tagged_batches())
def test_micro_scores_from_counts_equal_seqeval_scores(batch):
    gold, pred = batch
    precision, recall, f1 = prf(*count(gold, pred))
    assert precision == pytest.approx(precision_score(gold, pred, zero_division=0), abs=1e-9)
    assert recall == pytest.approx(recall_score(gold, pred, zero_division=0), abs=1e-9)
    assert f1 == pytest.approx(f1_score(gold, pred, zero_division=0), abs=1e-9)


@PROPERTY
@given(tagged_batches(max_rows=10), st.lists(st.integers(1, 4), min_size=1, max_size=10))
def test_counts_summed_over_an_uneven_split_of_a_batch_equal_the_whole_batch(batch, sizes):
    gold_rows, pred_rows = batch
    gold, mask = encode(gold_rows)
    pred, _ = encode(pred_rows)
    whole = entity_counts(pred, gold, mask, SCHEME)
    total = torch.zeros(3, dtype=torch.float64)
    start = 0
    for size in [*sizes, len(gold_rows)]:  # the last piece takes whatever is left
        piece = slice(start, min(start + size, len(gold_rows)))
        total += entity_counts(pred[piece], gold[piece], mask[piece], SCHEME)
        start = piece.stop
    assert torch.equal(total, whole)
    # And micro F1 over the summed counts is the seqeval value for the whole corpus.
    assert prf(*total.tolist())[2] == pytest.approx(
        f1_score(gold_rows, pred_rows, zero_division=0), abs=1e-9)


# --- per-type report -----------------------------------------------------------------------

def test_per_type_report_is_json_serialisable_and_matches_the_counts():
    gold = [["B-per", "I-per", "O", "B-geo"], ["B-org-x", "O"], ["O"]]
    pred = [["B-per", "I-per", "O", "O"], ["B-org-x", "B-per"], ["B-geo"]]
    report = per_type_report(gold, pred)
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert set(report) == {"per", "geo", "org-x", "micro avg"}
    tp, n_pred, n_gold = count(gold, pred)
    micro = report["micro avg"]
    assert micro["support"] == n_gold == 3
    assert (micro["precision"], micro["recall"], micro["f1"]) == pytest.approx(
        prf(tp, n_pred, n_gold), abs=1e-9)
    assert report["per"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3,
                                           "support": 1})
    assert report["geo"]["support"] == 1 and report["geo"]["recall"] == 0.0


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")
@settings(max_examples=40, deadline=None)
@given(tagged_batches())
def test_per_type_report_agrees_with_counts_on_random_batches(batch):
    gold, pred = batch
    report = per_type_report(gold, pred)
    json.dumps(report, allow_nan=False)
    for value in (v for row in report.values() for v in row.values()):
        assert type(value) in (int, float)
    tp, n_pred, n_gold = count(gold, pred)
    assert report["micro avg"]["support"] == n_gold
    assert report["micro avg"]["f1"] == pytest.approx(prf(tp, n_pred, n_gold)[2], abs=1e-9)
    gold_per_type = Counter(kind for row in gold for kind, _, _ in spans(row))
    for kind, n in gold_per_type.items():
        assert report[kind]["support"] == n
    seqeval_micro = classification_report(gold, pred, output_dict=True,
                                          zero_division=0)["micro avg"]
    assert report["micro avg"]["precision"] == pytest.approx(seqeval_micro["precision"])


# --- the task's metric functions, summed by the engine over batches -------------------------

@PROPERTY
@given(tagged_batches(max_rows=10), st.lists(st.integers(1, 3), min_size=1, max_size=10))
def test_epoch_precision_recall_f1_over_batches_equal_seqeval_on_the_whole(batch, sizes):
    """Batches with no predicted or no gold entity must add nothing to a denominator."""
    from torchstarter.engine.metrics import MetricTotals
    from torchstarter.tasks.ner import METRICS
    from torchstarter.tasks.ner.net import TaggerOutput

    gold_rows, pred_rows = batch
    gold, mask = encode(gold_rows)
    pred, _ = encode(pred_rows, pad=0)
    emissions = torch.nn.functional.one_hot(pred, len(TAGS)).float()  # argmax is pred
    totals = MetricTotals(METRICS, torch.device("cpu"))
    start = 0
    for size in [*sizes, len(gold_rows)]:
        piece = slice(start, min(start + size, len(gold_rows)))
        if piece.start < piece.stop:
            out = TaggerOutput(emissions[piece], mask[piece], None, SCHEME)
            totals.add(torch.tensor(0.0), 1, out, gold[piece], piece.stop - piece.start)
        start = piece.stop
    epoch = totals.compute()
    assert epoch["precision"] == pytest.approx(
        precision_score(gold_rows, pred_rows, zero_division=0), abs=1e-12)
    assert epoch["recall"] == pytest.approx(
        recall_score(gold_rows, pred_rows, zero_division=0), abs=1e-12)
    assert epoch["f1"] == pytest.approx(f1_score(gold_rows, pred_rows, zero_division=0),
                                        abs=1e-12)


def test_a_batch_without_predicted_entities_does_not_lower_the_epoch_precision():
    from torchstarter.engine.metrics import MetricTotals
    from torchstarter.tasks.ner import METRICS
    from torchstarter.tasks.ner.net import TaggerOutput

    totals = MetricTotals(METRICS, torch.device("cpu"))
    for gold_rows, pred_rows in [([["B-per", "O"]], [["B-per", "B-geo"]]),  # 1 of 2 right
                                 ([["O", "O"]], [["O", "O"]])]:  # nothing predicted
        gold, mask = encode(gold_rows)
        pred, _ = encode(pred_rows, pad=0)
        out = TaggerOutput(torch.nn.functional.one_hot(pred, len(TAGS)).float(), mask, None,
                           SCHEME)
        totals.add(torch.tensor(0.0), 1, out, gold, 1)
    assert totals.compute()["precision"] == 0.5  # a clamped denominator gave 1/3
