"""Padding never changes the NER loss, predictions or metrics."""

import pytest
import torch

from torchstarter.tasks.ner import METRICS, build_model, loss_fn
from torchstarter.tasks.registry import resolve_params

TAGS = ["O", "B-geo", "I-geo", "B-per", "I-per"]
INFO = {"words": ["<pad>", "UNK", "John", "lives", "in", "New", "York", "."], "tags": TAGS,
        "lowercase": False, "chars": sorted(set("JohnlivesinNewYork."))}


def make_model(**params):
    _, p = resolve_params({"task": "ner", "learning_rate": 1e-3, "batch_size": 2,
                           "num_epochs": 1, **params}, "test")
    torch.manual_seed(0)
    return build_model(p, INFO).eval()


def batch(extra_pad: int):
    words = torch.tensor([[2, 3, 4, 5, 6, 7], [5, 6, 7, 0, 0, 0]])
    labels = torch.tensor([[3, 0, 0, 1, 2, 0], [1, 2, 0, -1, -1, -1]])
    chars = torch.randint(1, 10, (2, 6, 20), generator=torch.Generator().manual_seed(1))
    chars[1, 3:] = 0
    if extra_pad:
        words = torch.cat([words, torch.zeros(2, extra_pad, dtype=torch.long)], 1)
        labels = torch.cat([labels, torch.full((2, extra_pad), -1)], 1)
        chars = torch.cat([chars, torch.zeros(2, extra_pad, 20, dtype=torch.long)], 1)
    return {"words": words, "lengths": torch.tensor([6, 3]), "chars": chars}, labels


@pytest.mark.parametrize("params", [
    {}, {"bidirectional": True}, {"crf": True}, {"bidirectional": True, "crf": True,
                                                 "char_embedding_dim": 8, "num_layers": 2},
])
def test_loss_and_metrics_are_unchanged_by_extra_padding(params):
    model = make_model(**params)
    with torch.no_grad():
        results = []
        for pad in (0, 7):
            inputs, labels = batch(pad)
            out = model(inputs)
            loss, count = loss_fn(out, labels)
            metrics = {k: tuple(float(x) for x in fn(out, labels)) for k, fn in METRICS.items()}
            results.append((float(loss), int(count), metrics,
                            out.predictions()[:, :6].tolist()))
    (loss_a, count_a, metrics_a, pred_a), (loss_b, count_b, metrics_b, pred_b) = results
    assert count_a == count_b == 9
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert metrics_a == metrics_b
    assert pred_a == pred_b


def test_padded_positions_are_predicted_as_minus_one():
    model = make_model()
    inputs, _ = batch(3)
    with torch.no_grad():
        predicted = model(inputs).predictions()
    assert (predicted[1, 3:] == -1).all() and (predicted[0, 6:] == -1).all()
    assert (predicted[0, :6] >= 0).all()


def test_every_sentence_is_used_once_per_epoch_with_bucketing(tmp_path):
    from torchstarter.tasks.ner.data import TokenData

    lengths = torch.randint(1, 30, (103,), generator=torch.Generator().manual_seed(0))
    words = torch.zeros(103, 30, dtype=torch.long)
    data = TokenData(words, words.clone(), lengths, bucket=True)
    order = torch.randperm(103)
    batches = data.batch_indices(order, 5)
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    assert [len(b) for b in batches[:-1]] == [5] * (len(batches) - 1) or \
        sorted(len(b) for b in batches)[0] >= 1
    plain = TokenData(words, words.clone(), lengths)
    assert torch.equal(torch.cat(plain.batch_indices(order, 5)), order)
