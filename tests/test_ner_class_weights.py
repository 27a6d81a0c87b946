"""NER class weights: a tag-weighted training loss that keeps the epoch loss exact."""

import json
import math

import pytest
import torch
from test_host_reads import HostReads

from torchstarter.engine.losses import balanced_class_weights as balanced_tag_weights
from torchstarter.errors import UserError
from torchstarter.experiment.training import train
from torchstarter.tasks.ner import TASK
from torchstarter.tasks.ner.data import TokenData
from torchstarter.tasks.ner.entities import TagScheme
from torchstarter.tasks.ner.net import TaggerOutput, weighted_loss_fn
from torchstarter.tasks.registry import resolve_params

TAGS = ["O", "B-per", "I-per", "B-geo"]
INFO = {"words": ["<pad>", "UNK", "a"], "tags": TAGS, "lowercase": False, "chars": []}


def params(**extra):
    return resolve_params({"task": "ner", "learning_rate": 1e-3, "batch_size": 2,
                           "num_epochs": 1, **extra}, "test")[1]


def train_split():
    # Real tokens: O x5, B-per x2, I-per x1; B-geo never; -1 is padding.
    tags = torch.tensor([[0, 1, 2, 0, 0], [1, 0, 0, -1, -1]])
    lengths = torch.tensor([5, 3])
    return TokenData(torch.full_like(tags, 2).masked_fill(tags < 0, 0), tags, lengths)


def outputs(emissions, labels):
    mask = labels >= 0
    return TaggerOutput(emissions, mask, None, TagScheme(TAGS))


def test_balanced_weights_follow_the_sklearn_rule_and_zero_absent_tags():
    w = balanced_tag_weights(train_split().tags, len(TAGS))
    n, present = 8, 3  # tokens, tags present
    assert w.tolist() == pytest.approx([n / (present * 5), n / (present * 2),
                                        n / (present * 1), 0.0])


def test_the_weighted_loss_equals_a_hand_computation():
    weights = torch.tensor([0.5, 2.0, 3.0, 1.0])
    labels = torch.tensor([[0, 1, 2], [3, 0, -1]])
    emissions = torch.tensor([[[1.0, 0.0, -1.0, 0.5], [0.2, 0.3, 0.1, 0.0],
                               [0.0, 0.0, 2.0, -1.0]],
                              [[0.1, 0.2, 0.3, 0.4], [1.5, -0.5, 0.0, 0.0],
                               [9.0, 9.0, 9.0, 9.0]]])  # the last is padding: ignored
    loss, count = weighted_loss_fn(weights)(outputs(emissions, labels), labels)
    num = den = 0.0
    for b in range(2):
        for t in range(3):
            y = int(labels[b, t])
            if y < 0:
                continue
            row = emissions[b, t].tolist()
            nll = math.log(sum(math.exp(v) for v in row)) - row[y]
            num += float(weights[y]) * nll
            den += float(weights[y])
    assert isinstance(count, torch.Tensor)
    assert float(count) == pytest.approx(den) == 0.5 + 2.0 + 3.0 + 1.0 + 0.5
    assert float(loss) == pytest.approx(num / den, rel=1e-6)
    # The same as torch's own weighted mean.
    expected = torch.nn.functional.cross_entropy(emissions.reshape(-1, 4), labels.reshape(-1),
                                                 weight=weights, ignore_index=-1)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_summing_value_times_count_over_batches_gives_the_weighted_mean_of_the_epoch():
    weights = torch.tensor([0.5, 2.0, 3.0, 1.0])
    fn = weighted_loss_fn(weights)
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([[0, 1, 2, 3], [0, 0, 1, -1], [2, 0, -1, -1]])
    emissions = torch.randn(3, 4, 4, generator=gen)
    whole, whole_count = fn(outputs(emissions, labels), labels)
    parts = [fn(outputs(emissions[i:i + 1], labels[i:i + 1]), labels[i:i + 1])
             for i in range(3)]
    total = sum(float(v) * float(c) for v, c in parts)
    count = sum(float(c) for _, c in parts)
    assert count == pytest.approx(float(whole_count))
    assert total / count == pytest.approx(float(whole), rel=1e-6)


def test_the_task_counts_weights_on_the_train_split_and_counts_their_sum():
    fn = TASK.training_loss(params(class_weights="balanced"), train_split(), INFO)
    labels = torch.tensor([[0, 1, 3, -1]])  # B-geo, absent from train, weighs nothing
    emissions = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(1))
    loss, count = fn(outputs(emissions, labels), labels)
    w = balanced_tag_weights(train_split().tags, len(TAGS))
    assert float(count) == pytest.approx(float(w[0] + w[1]))
    log_p = emissions[0].log_softmax(-1)
    hand = -(w[0] * log_p[0, 0] + w[1] * log_p[1, 1]) / (w[0] + w[1])
    assert float(loss) == pytest.approx(float(hand), rel=1e-6)


def test_none_returns_the_tasks_plain_loss():
    assert TASK.training_loss(params(), train_split(), INFO) == TASK.loss
    assert TASK.training_loss(params(class_weights="none", crf=True), None, INFO) == TASK.loss


def test_crf_with_balanced_weights_is_refused_in_one_line():
    with pytest.raises(UserError) as info:
        TASK.training_loss(params(class_weights="balanced", crf=True), train_split(), INFO)
    message = str(info.value)
    assert "\n" not in message
    assert "class_weights" in message and "crf" in message and "per sentence" in message


def test_an_unknown_choice_is_refused_by_the_params():
    with pytest.raises(UserError, match="class_weights"):
        params(class_weights="inverse")


def test_the_weighted_loss_reads_nothing_back_to_the_host():
    with HostReads() as reads:
        fn = TASK.training_loss(params(class_weights="balanced"), train_split(), INFO)
        labels = torch.tensor([[0, 1, 2], [1, 0, -1]])
        loss, count = fn(outputs(torch.randn(2, 3, 4, requires_grad=True), labels), labels)
        (loss * count).backward()
    assert dict(reads.where) == {}


def test_a_short_run_with_balanced_weights_trains_with_the_weighted_loss(tmp_path,
                                                                       monkeypatch):
    import torchstarter.tasks.ner as ner

    calls = []

    def counted(weights):
        fn = weighted_loss_fn(weights)

        def loss(outputs, labels):
            calls.append(labels.shape[0])
            return fn(outputs, labels)
        return loss

    monkeypatch.setattr(ner, "weighted_loss_fn", counted)
    TASK.write_sample_data(tmp_path / "raw")
    TASK.build_dataset(TASK.build_options(tmp_path / "raw", tmp_path / "data"))
    TASK.build_vocab(TASK.vocab_options(tmp_path / "data"))
    model_dir = tmp_path / "exp"
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({
        "task": "ner", "learning_rate": 0.01, "batch_size": 8, "num_epochs": 2,
        "class_weights": "balanced"}))
    trainer = train(model_dir, tmp_path / "data", console=False)
    assert trainer.epoch == 2
    assert sum(calls) == 2 * 57  # every train sentence of both epochs, and nothing else
    history = json.loads((model_dir / "history.json").read_text())
    assert all(math.isfinite(row["train_loss"]) for row in history)
