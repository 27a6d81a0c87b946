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


def test_pad_to_multiple_leaves_a_few_fixed_batch_widths():
    from torchstarter.tasks.ner.data import TokenData

    lengths = torch.randint(1, 38, (211,), generator=torch.Generator().manual_seed(2))
    lengths[0] = 37  # the split's width
    words = torch.zeros(211, 37, dtype=torch.long)
    data = TokenData(words, words.clone(), lengths, pad_to_multiple=16)
    widths = set()
    for index in data.batch_indices(torch.randperm(211), 5):
        inputs, tags = data.get_batch(index)
        width, longest = inputs["words"].shape[1], int(lengths[index].max())
        assert tags.shape[1] == width
        assert width == min(-(-longest // 16) * 16, 37)  # next multiple, capped at the split
        widths.add(width)
    assert widths == {16, 32, 37}
    unpadded = TokenData(words, words.clone(), lengths)
    index = torch.tensor([3, 4])
    assert unpadded.get_batch(index)[0]["words"].shape[1] == int(lengths[index].max())


@pytest.mark.parametrize("params", [{}, {"bidirectional": True, "crf": True,
                                         "char_embedding_dim": 8, "char_filters": 8}])
def test_training_with_pad_to_multiple_matches_training_without(tmp_path, params):
    from torchstarter.engine.build import build_trainer
    from torchstarter.engine.rng import seed_everything
    from torchstarter.tasks import load_task

    task = load_task("ner")
    task.write_sample_data(tmp_path / "raw")
    task.build_dataset(task.build_options(tmp_path / "raw", tmp_path / "data"))
    task.build_vocab(task.vocab_options(tmp_path / "data", min_count=1))
    runs = []
    # SGD: Adam's first steps are about lr * sign(gradient), so a gradient that is zero up
    # to rounding could move a weight by +-lr in one run and not the other.
    for multiple in (1, 16):
        _, p = resolve_params({"task": "ner", "learning_rate": 0.1, "optimizer": "sgd",
                               "batch_size": 8,
                               "num_epochs": 2, "pad_to_multiple": multiple, **params}, "t")
        info = task.describe_data(p, tmp_path / "data")
        seed_everything(p.seed)
        trainer = build_trainer(task, p, torch.device("cpu"), info)
        split = task.load_split(p, tmp_path / "data", "train", info)
        val = task.load_split(p, tmp_path / "data", "val", info)
        runs.append((trainer.fit(split, val), trainer.model.state_dict()))
    (plain, plain_weights), (padded, padded_weights) = runs
    for a, b in zip(plain, padded, strict=True):
        assert a.train == pytest.approx(b.train, rel=1e-4, abs=1e-6)
        assert a.val == pytest.approx(b.val, rel=1e-4, abs=1e-6)
    for name, weight in plain_weights.items():
        torch.testing.assert_close(padded_weights[name], weight, rtol=1e-4, atol=1e-5)


class NoHostRead(torch.Tensor):
    """A tensor that fails the test when its values are read on the host (a GPU sync)."""

    READS = {torch.Tensor.cpu, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy,
             torch.Tensor.__bool__, torch.Tensor.__int__, torch.Tensor.__float__,
             torch.Tensor.__index__}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in cls.READS:
            raise AssertionError(f"{func.__name__} read a device tensor on the host")
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize("params", [{"bidirectional": True},
                                    {"bidirectional": True, "num_layers": 2}])
def test_bidirectional_batches_match_sentences_alone_and_read_lengths_only_on_the_host(params):
    model = make_model(**params)
    words = torch.tensor([[5, 6, 7, 0, 0, 0], [2, 3, 4, 5, 6, 7], [4, 5, 0, 0, 0, 0]])
    host_lengths = torch.tensor([3, 6, 2])  # unsorted, as batches come
    batch_in = {"words": words, "lengths": host_lengths.clone().as_subclass(NoHostRead),
                "host_lengths": host_lengths}
    with torch.no_grad():
        together = model(batch_in).emissions.as_subclass(torch.Tensor)
        for row, n in enumerate(host_lengths.tolist()):
            alone = model({"words": words[row:row + 1, :n],
                           "lengths": torch.tensor([n])}).emissions
            torch.testing.assert_close(together[row, :n], alone[0], rtol=1e-5, atol=1e-6)
