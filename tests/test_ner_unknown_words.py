"""Unknown words in NER: singletons trained as UNK, lowercased lookups, case features."""

import json
import signal

import pytest
import torch
from test_graceful_stop import StopAfterChecks
from test_host_reads import NAN_CHECK, NER_WIDTH, HostReads, epoch_reads

from torchstarter.cli.main import main
from torchstarter.engine.checkpoint import load_checkpoint
from torchstarter.engine.interrupt import GracefulStop
from torchstarter.experiment import training
from torchstarter.experiment.evaluation import evaluate, predict
from torchstarter.experiment.training import train
from torchstarter.tasks.ner import TASK, build_model
from torchstarter.tasks.ner.corpus import write_split
from torchstarter.tasks.ner.data import (
    CASE_DIGIT,
    CASE_LOWER,
    CASE_OTHER,
    CASE_TITLE,
    CASE_UPPER,
    UNK_ID,
    Encoder,
    case_shape,
    describe_data,
    load_split,
    replace_singletons,
    singleton_mask,
)
from torchstarter.tasks.ner.report import oov_entity_scores
from torchstarter.tasks.ner.vocab import build_vocab
from torchstarter.tasks.registry import resolve_params


def params(**extra):
    return resolve_params({"task": "ner", "learning_rate": 1e-3, "batch_size": 2,
                           "num_epochs": 1, **extra}, "test")[1]


TRAIN = [(["Paris", "is", "big", "."], ["B-geo", "O", "O", "O"]),
         (["PARIS", "is", "small", "."], ["B-geo", "O", "O", "O"]),
         (["Ann", "is", "in", "paris", "."], ["B-per", "O", "O", "B-geo", "O"])]


@pytest.fixture
def folder(tmp_path):
    write_split(tmp_path / "train", TRAIN)
    write_split(tmp_path / "val", [(["Bob", "is", "in", "PARIS", "."],
                                    ["B-per", "O", "O", "B-geo", "O"])])
    write_split(tmp_path / "test", [(["Zed", "saw", "Paris", "."], ["B-per", "O", "B-geo", "O"])])
    build_vocab(tmp_path)  # with case: "Paris", "PARIS" and "paris" are three words
    return tmp_path


# ---- singletons and their replacement -------------------------------------------------

def test_singletons_are_real_tokens_whose_word_occurs_once():
    words = torch.tensor([[2, 3, 4, 1, 0], [2, 5, 1, 0, 0]])
    lengths = torch.tensor([4, 3])
    mask = singleton_mask(words, lengths, 6)
    # 2 twice, UNK (1) never a singleton, padding (0) never counted.
    assert mask.tolist() == [[False, True, True, False, False],
                             [False, True, False, False, False]]


def test_only_the_train_split_carries_singletons_and_only_when_asked(folder):
    p = params(unk_replace=0.5)
    info = describe_data(p, folder)
    train_split = load_split(p, folder, "train", info)
    inputs, _ = train_split.get_batch(torch.arange(3))
    enc = Encoder(info)
    # "is" and "." occur 3 times; every other word of this train split once.
    once = [[t not in ("is", ".") for t in tokens] + [False] * (5 - len(tokens))
            for tokens, _ in TRAIN]
    assert inputs["singletons"].tolist() == once
    assert inputs["words"][0, 0] == enc.words(["Paris"])[0]
    val_inputs, _ = load_split(p, folder, "val", info).get_batch(torch.arange(1))
    assert "singletons" not in val_inputs
    assert TASK.augment(p, val_inputs, torch.Generator()) is val_inputs  # nothing to replace
    off = load_split(params(), folder, "train", info)
    assert off.singletons is None and "singletons" not in off.get_batch(torch.arange(3))[0]


def big_batch(n=200, width=50):
    words = torch.arange(n * width).reshape(n, width) % 997 + 2
    singles = torch.zeros(n, width, dtype=torch.bool)
    singles[:, ::2] = True  # half the positions are singletons
    return {"words": words, "lengths": torch.full((n,), width), "singletons": singles}


def test_replacement_hits_singletons_only_at_about_the_asked_rate():
    inputs = big_batch()
    out = replace_singletons(inputs, 0.3, torch.Generator().manual_seed(0))
    replaced = out["words"] != inputs["words"]
    assert (out["words"][replaced] == UNK_ID).all()
    assert not replaced[~inputs["singletons"]].any()
    rate = replaced.sum().item() / inputs["singletons"].sum().item()
    assert rate == pytest.approx(0.3, abs=0.02)  # 5000 singletons: sd about 0.0065
    assert torch.equal(inputs["words"], big_batch()["words"])  # the batch is not edited


def test_the_same_generator_state_gives_the_same_replacement():
    inputs = big_batch(20, 10)
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    first = replace_singletons(inputs, 0.5, gen)["words"]
    second = replace_singletons(inputs, 0.5, gen)["words"]  # the generator moved on
    gen.set_state(state)
    again = replace_singletons(inputs, 0.5, gen)["words"]
    assert torch.equal(first, again) and not torch.equal(first, second)
    other = replace_singletons(inputs, 0.5, torch.Generator().manual_seed(5))["words"]
    assert torch.equal(first, other)


def test_augment_is_free_when_unk_replace_is_off():
    inputs = big_batch(4, 4)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert TASK.augment(params(), inputs, gen) is inputs
    assert torch.equal(gen.get_state(), state)  # no draw


def test_the_options_add_no_host_read_to_a_training_step(tmp_path):
    steps, reads = epoch_reads(tmp_path, "ner", unk_replace=0.5, lowercase_words=True,
                               case_features=True, char_embedding_dim=4)
    assert reads.pop(NAN_CHECK, 0) == steps // 10
    assert reads.pop(NER_WIDTH, 0) == steps
    assert reads == {}


def test_replacement_reads_nothing_back_to_the_host():
    inputs = big_batch(8, 8)
    with HostReads() as reads:
        TASK.augment(params(unk_replace=0.5), inputs, torch.Generator().manual_seed(0))
    assert dict(reads.where) == {}


# ---- lowercased lookups and case features ----------------------------------------------

def test_lowercased_lookup_maps_every_casing_to_one_word(folder):
    cased = Encoder(describe_data(params(), folder))
    ids = cased.words(["Paris", "PARIS", "paris"])
    assert len(set(ids)) == 3 and UNK_ID not in ids
    info = describe_data(params(lowercase_words=True), folder)
    lower = Encoder(info)
    ids = lower.words(["Paris", "PARIS", "paris", "pArIs"])
    assert len(set(ids)) == 1 and ids[0] != UNK_ID
    assert info["lowercase"] is True and info["words"][:2] == ["<pad>", "UNK"]
    assert len(info["words"]) == len(set(info["words"]))
    # The same words as a vocabulary built lowercased (the order may differ: cased counts).
    build_vocab(folder, lowercase=True)
    built_lower = describe_data(params(), folder)
    assert sorted(built_lower["words"]) == sorted(info["words"])
    assert describe_data(params(lowercase_words=True), folder) == built_lower


def test_with_the_options_off_data_info_is_what_it_always_was(folder):
    info = describe_data(params(), folder)
    assert set(info) == {"words", "tags", "lowercase", "chars"}
    assert info["lowercase"] is False and "Paris" in info["words"]


def test_lowercased_singletons_count_every_casing(folder):
    p = params(unk_replace=0.5, lowercase_words=True)
    data = load_split(p, folder, "train", describe_data(p, folder))
    # paris x3 now: no singleton; "Ann", "big", "small", "in" still are.
    assert data.singletons.sum().item() == 4
    assert not data.singletons[0, 0] and not data.singletons[1, 0]


@pytest.mark.parametrize("token, shape", [
    ("paris", CASE_LOWER), ("PARIS", CASE_UPPER), ("Paris", CASE_TITLE), ("A", CASE_TITLE),
    ("1990", CASE_DIGIT), ("F-16", CASE_DIGIT), ("iPhone", CASE_OTHER), (",", CASE_OTHER),
    ("don't", CASE_LOWER), ("Übel", CASE_TITLE)])
def test_case_shapes(token, shape):
    assert case_shape(token) == shape


def test_case_features_tell_paris_from_paris_after_lowercasing(folder):
    p = params(lowercase_words=True, case_features=True)
    info = describe_data(p, folder)
    enc = Encoder(info)
    assert enc.words(["Paris"]) == enc.words(["paris"])
    assert enc.cases(["Paris"]) != enc.cases(["paris"])
    data = load_split(p, folder, "train", info)
    inputs, _ = data.get_batch(torch.tensor([0, 2]))
    assert inputs["cases"][0, 0] == CASE_TITLE and inputs["cases"][1, 3] == CASE_LOWER
    assert inputs["cases"][0, 4] == 0  # padding
    torch.manual_seed(0)
    model = build_model(p, info).eval()
    assert model.case_embedding is not None
    one = {"words": torch.tensor([enc.words(["Paris"])]), "lengths": torch.tensor([1])}
    with torch.no_grad():
        title = model({**one, "cases": torch.tensor([[CASE_TITLE]])}).emissions
        lower = model({**one, "cases": torch.tensor([[CASE_LOWER]])}).emissions
    assert not torch.allclose(title, lower)


def test_a_model_without_the_options_has_no_new_weights(folder):
    info = describe_data(params(), folder)
    keys = set(build_model(params(), info).state_dict())
    assert not any(k.startswith("case_embedding") for k in keys)


# ---- OOV entities ----------------------------------------------------------------------

def test_oov_entity_scores_count_entities_made_only_of_unknown_words():
    gold = [["B-per", "I-per", "O", "B-geo"], ["B-org", "O"]]
    pred = [["B-per", "I-per", "O", "B-org"], ["B-org", "O"]]
    oov = [[True, True, False, True], [False, True]]
    scores = oov_entity_scores(gold, pred, oov)
    # gold OOV: per 0-2, geo 3-4; predicted OOV: per 0-2, org 3-4; org 0-1 is known.
    assert (scores["support"], scores["predicted"]) == (2, 2)
    assert scores["precision"] == scores["recall"] == scores["f1"] == 0.5
    assert (scores["oov_tokens"], scores["tokens"]) == (4, 6)
    partly = oov_entity_scores([["B-per", "I-per"]], [["B-per", "O"]], [[False, True]],
                               every=False)
    assert (partly["support"], partly["predicted"], partly["f1"]) == (1, 0, 0.0)


def test_oov_tokens_are_unknown_in_any_casing(folder):
    info = describe_data(params(), folder)
    data = load_split(params(), folder, "test", info)
    # Zed saw Paris .: "Zed" and "saw" are not train words in any casing.
    assert data.oov[0, :4].tolist() == [True, True, False, False]
    lower = describe_data(params(lowercase_words=True), folder)
    assert torch.equal(load_split(params(lowercase_words=True), folder, "test", lower).oov,
                       data.oov)


# ---- end to end ------------------------------------------------------------------------

OPTIONS = {"unk_replace": 0.5, "lowercase_words": True, "case_features": True}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("ner_unk")
    TASK.write_sample_data(root / "raw")
    TASK.build_dataset(TASK.build_options(root / "raw", root / "data"))
    TASK.build_vocab(TASK.vocab_options(root / "data"))
    return root / "data"


def experiment(tmp_path, name, **extra):
    model_dir = tmp_path / name
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({
        "task": "ner", "learning_rate": 0.01, "batch_size": 8, "num_epochs": 2,
        "bidirectional": True, "char_embedding_dim": 4, "char_filters": 4, **extra}))
    return model_dir


def test_train_evaluate_and_predict_with_the_options_on(sample, tmp_path, monkeypatch):
    seen = []
    real = TASK.augment

    def spy(p, inputs, generator):
        seen.append("singletons" in inputs)
        return real(p, inputs, generator)

    forwards = []
    model_dir = experiment(tmp_path, "on", **OPTIONS)
    monkeypatch.setattr(TASK, "augment", spy)
    from torchstarter.tasks.ner.net import Tagger
    forward = Tagger.forward

    def watch(self, batch):
        forwards.append((self.training, "singletons" in batch))
        return forward(self, batch)

    monkeypatch.setattr(Tagger, "forward", watch)
    train(model_dir, sample, console=False)
    assert seen == [True] * (2 * 8)  # 57 train sentences, batches of 8, two epochs
    assert all(training for training, singles in forwards if singles)  # only train batches
    assert any(not training for training, _ in forwards)  # validation ran, unaugmented
    monkeypatch.undo()

    state = load_checkpoint(model_dir / "best.pt")
    assert state["data_info"]["lowercase"] is True
    assert "case_embedding.weight" in state["model"]
    metrics, _ = evaluate(model_dir, sample)
    oov = metrics["oov_entities"]
    assert {"precision", "recall", "f1", "support", "predicted"} <= set(oov)
    assert 0 < oov["oov_tokens"] < oov["tokens"]
    _, rows = predict(model_dir, ["John lives in PARIS .", "john lives in paris ."])
    assert [len(r["tags"]) for r in rows] == [5, 5]


def test_the_oov_report_follows_sentences_when_batches_are_grouped_by_length(sample):
    from torchstarter.tasks.ner.report import evaluation_report

    reports = []
    for bucket in (False, True):
        p = params(bucket_by_length=bucket, batch_size=4)
        info = describe_data(p, sample)
        torch.manual_seed(0)
        model = build_model(p, info)
        data = load_split(p, sample, "test", info)
        report = evaluation_report(model, p, data, torch.device("cpu"), info)
        assert report["oov_entities"]["oov_tokens"] == int(data.oov.sum())
        reports.append(report)
    assert reports[0] == reports[1]


def test_a_run_with_unk_replace_resumes_mid_epoch_to_identical_weights(sample, tmp_path,
                                                                     monkeypatch):
    # Threads pinned: a thread count that follows the machine's load may change the sums.
    straight = experiment(tmp_path, "straight", unk_replace=0.5, num_threads=1)
    stopped = experiment(tmp_path, "stopped", unk_replace=0.5, num_threads=1)
    train(straight, sample, console=False)
    # 8 steps an epoch plus one check at its end: check 12 is step 3 of epoch 2.
    monkeypatch.setattr(training, "GracefulStop", lambda: StopAfterChecks(12, signal.SIGINT))
    assert main(["train", "--model-dir", str(stopped), "--data-dir", str(sample)]) == 130
    assert load_checkpoint(stopped / "last.pt")["partial_epoch"]["step"] == 3
    monkeypatch.setattr(training, "GracefulStop", GracefulStop)
    train(stopped, sample, restore="last", console=False)
    a = load_checkpoint(straight / "last.pt")["model"]
    b = load_checkpoint(stopped / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # And the replacement mattered: without it the UNK row would never change.
    plain = experiment(tmp_path, "plain", num_threads=1)
    train(plain, sample, console=False)
    c = load_checkpoint(plain / "last.pt")["model"]
    assert not torch.equal(a["embedding.weight"][UNK_ID], c["embedding.weight"][UNK_ID])
