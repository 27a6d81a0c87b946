"""Pretrained word vectors for NER: the file's parser, matching, coverage, vocabulary
extension, freezing, and that evaluate, predict and restores behave around the file."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import types
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchstarter.cli.main import main
from torchstarter.engine.build import build_trainer
from torchstarter.engine.checkpoint import load_checkpoint
from torchstarter.errors import UserError
from torchstarter.experiment.evaluation import evaluate, predict
from torchstarter.experiment.training import train
from torchstarter.tasks.module_task import ModuleTask
from torchstarter.tasks.ner import TASK, build_model
from torchstarter.tasks.ner.corpus import write_split
from torchstarter.tasks.ner.data import UNK_ID, Encoder, describe_data, load_split
from torchstarter.tasks.ner.embeddings import read_vectors
from torchstarter.tasks.ner.vocab import build_vocab
from torchstarter.tasks.registry import resolve_params


def params(**extra):
    return resolve_params({"task": "ner", "learning_rate": 1e-3, "batch_size": 2,
                           "num_epochs": 1, **extra}, "test")[1]


def write_vectors(path: Path, vectors: dict[str, list[float]] | list[tuple[str, list]],
                  header: bool = False, gz: bool = False) -> Path:
    """A vectors file as GloVe (no header) or word2vec/fastText (count dim) write it."""
    items = list(vectors.items()) if isinstance(vectors, dict) else list(vectors)
    lines = [f"{w} {' '.join(repr(float(v)) for v in vec)}\n" for w, vec in items]
    if header:
        lines.insert(0, f"{len(items)} {len(items[0][1])}\n")
    data = "".join(lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# ---- the parser ------------------------------------------------------------------------

VECS = {"the": [0.5, -1.0, 2.0], "Paris": [1.0, 0.25, -0.125], "paris": [3.0, 3.5, 4.0]}


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("gz", [False, True])
def test_plain_headed_and_gzipped_files_read_alike(tmp_path, header, gz):
    path = write_vectors(tmp_path / ("v.txt.gz" if gz else "v.txt"), VECS, header, gz)
    vectors = read_vectors(path, 3)
    assert list(vectors.index) == list(VECS) and vectors.lines == 3
    assert torch.equal(vectors.rows, torch.tensor(list(VECS.values())))
    assert vectors.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@settings(max_examples=40, deadline=None)
@given(entries=st.lists(st.tuples(
    st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=8),
    st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False),
             min_size=3, max_size=3)), min_size=1, max_size=12, unique_by=lambda e: e[0]),
       header=st.booleans(), gz=st.booleans())
def test_random_words_and_vectors_round_trip(tmp_path_factory, entries, header, gz):
    path = write_vectors(tmp_path_factory.mktemp("rt") / "v", entries, header, gz)
    vectors = read_vectors(path, 3)
    assert list(vectors.index) == [w for w, _ in entries]
    assert torch.equal(vectors.rows, torch.tensor([v for _, v in entries],
                                                  dtype=torch.float32))


def test_the_first_of_repeated_words_wins_and_only_kept_words_stay(tmp_path):
    path = write_vectors(tmp_path / "v.txt", [("a", [1, 2]), ("b", [3, 4]), ("a", [5, 6])])
    vectors = read_vectors(path, 2)
    assert vectors.rows.tolist() == [[1, 2], [3, 4]] and vectors.lines == 3
    only_b = read_vectors(path, 2, keep=lambda w: w == "b")
    assert list(only_b.index) == ["b"] and only_b.rows.tolist() == [[3, 4]]
    assert read_vectors(path, 2, values=False).rows is None


def test_a_second_pass_may_skip_checking_the_lines_it_does_not_keep(tmp_path):
    path = tmp_path / "v.txt"  # initialize_model's pass: describe_data checked the bytes
    path.write_text("a 1 2\nb x y\nc 5 6\n", encoding="utf-8")
    fast = read_vectors(path, 2, keep=lambda w: w != "b", check_all=False)
    assert fast.rows.tolist() == [[1, 2], [5, 6]] and fast.lines == 3
    with pytest.raises(UserError, match="v.txt:2: 'x' is not a number"):
        read_vectors(path, 2, keep=lambda w: w != "b")


def test_a_word_holding_a_unicode_space_is_one_word(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("1\u00a0000 1 2\nfoo\x85 3 4\nfoo 5 6\n", encoding="utf-8")
    vectors = read_vectors(path, 2)
    assert list(vectors.index) == ["1\u00a0000", "foo\x85", "foo"]


def test_blank_lines_and_words_holding_spaces_are_skipped(tmp_path):
    path = tmp_path / "v.txt"  # glove.840B has lines like ". . . 0.1 0.2"
    path.write_text("a 1 2\n\n. . . 3 4\nb 5 6\n", encoding="utf-8")
    vectors = read_vectors(path, 2)
    assert list(vectors.index) == ["a", "b"] and vectors.lines == 3


@pytest.mark.parametrize("text, expected", [
    ("a 1 2 3\nb 4 5 6\n", "v.txt:1: vectors of 3 values, but embedding_dim is 2; set "
                           "embedding_dim to 3"),
    ("2 3\na 1 2 3\nb 4 5 6\n", "v.txt:1: the header says vectors of 3 values, but "
                                "embedding_dim is 2; set embedding_dim to 3"),
    ("a 1 2\nb 4 5 6\n", "v.txt:2: 3 values after the word, the vectors have 2"),
    ("a 1 2\nb 4\n", "v.txt:2: 1 values after the word"),
    ("a 1 2\nb 4 x\n", "v.txt:2: 'x' is not a number"),
    ("a 1 2\nb nan 1\n", "v.txt:2: 'nan' is not a finite number"),
    ("", "v.txt: holds no word vectors"),
    ("3 2\n", "v.txt: holds no word vectors"),
    ("3 2\na 1 2\n", "v.txt:1: the header says 3 vectors but the file holds 1"),
    ("a 1 2\nb 1e39 1\n", "v.txt:2: '1e39' is not a finite number (as float32)"),
    ("a 1 2\nb " + "0 " * 600_000 + "\n", "v.txt:2: a line of 1,200,003 characters"),
])
def test_a_broken_file_is_refused_in_one_line_naming_file_and_line(tmp_path, text, expected):
    path = tmp_path / "v.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as exc:
        read_vectors(path, 2)
    assert expected in one_line(exc)


def test_bytes_that_are_not_utf8_or_a_cut_gzip_are_refused_in_one_line(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"a 1 2\nb\xff 3 4\n")
    with pytest.raises(UserError) as exc:
        read_vectors(path, 2)
    assert "v.txt:2: not UTF-8 text" in one_line(exc)
    cut = tmp_path / "v.gz"
    cut.write_bytes(gzip.compress(b"a 1 2\n" * 1000)[:-30])
    with pytest.raises(UserError) as exc:
        read_vectors(cut, 2)
    assert "not a readable gzip file" in one_line(exc)


# ---- matching, coverage and extension on a hand-made vocabulary --------------------------

TRAIN = [(["Paris", "is", "big", "."], ["B-geo", "O", "O", "O"]),
         (["PARIS", "is", "small", "."], ["B-geo", "O", "O", "O"]),
         (["Ann", "is", "in", "paris", "."], ["B-per", "O", "O", "B-geo", "O"])]
# File order matters for extension; "Is" loses to "is" for the word "is", "ANN" is the only
# spelling of "Ann" the file has.
HAND = {"Paris": [1, 1, 1], "paris": [2, 2, 2], "is": [3, 3, 3], "in": [4, 4, 4],
        "saw": [5, 5, 5], "zed": [6, 6, 6], "Is": [7, 7, 7], "ANN": [8, 8, 8]}


@pytest.fixture
def folder(tmp_path):
    write_split(tmp_path / "train", TRAIN)
    write_split(tmp_path / "val", [(["Bob", "is", "in", "PARIS", "."],
                                    ["B-per", "O", "O", "B-geo", "O"])])
    write_split(tmp_path / "test", [(["Zed", "saw", "Paris", "."],
                                     ["B-per", "O", "B-geo", "O"])])
    build_vocab(tmp_path)  # with case: "Paris", "PARIS" and "paris" are three words
    write_vectors(tmp_path / "hand.txt", HAND)
    return tmp_path


def initialized(folder, **extra):
    """data_info and a model with the vectors copied in, as training builds it."""
    p = params(embeddings_file="hand.txt", embedding_dim=3, **extra)
    info = describe_data(p, folder)
    model = build_model(p, info)
    TASK.initialize_model(model, p, info)
    return p, info, model


def rows_of(info, model, words):
    ids = [info["words"].index(w) for w in words]
    return model.embedding.weight[ids].tolist()


def test_words_match_as_written_then_lowercased(folder):
    _, info, model = initialized(folder)
    assert rows_of(info, model, ["Paris", "paris", "PARIS", "is", "in", "Ann"]) == \
        [[1] * 3, [2] * 3, [2] * 3, [3] * 3, [4] * 3, [8] * 3]
    others = rows_of(info, model, [".", "big", "small", "UNK"])
    assert not any(row in (v for v in HAND.values()) for row in others)  # random start
    assert model.embedding.weight[0].tolist() == [0.0] * 3  # <pad> stays zero


def test_coverage_counts_vocabulary_words_and_val_tokens(folder):
    _, info, _ = initialized(folder)
    e = info["embeddings"]
    # Vocabulary: . is Ann PARIS Paris big in paris small; found: is Ann PARIS Paris in paris.
    assert (e["vocab_found"], e["vocab_coverage"]) == (6, 6 / 9)
    # Val "Bob is in PARIS .": is, in and PARIS have vectors; Bob (UNK) and "." do not.
    assert e["val_token_coverage"] == 3 / 5
    assert (e["vectors_in_file"], e["dim"], e["added_words"], e["file"]) == \
        (8, 3, 0, "hand.txt")
    assert e["sha256"] == hashlib.sha256((folder / "hand.txt").read_bytes()).hexdigest()
    assert describe_data(params(embeddings_file="hand.txt", embedding_dim=3), folder) == info


def test_without_a_vectors_file_data_info_is_what_it_always_was(folder):
    info = describe_data(params(), folder)
    assert "embeddings" not in info and set(info) == {"words", "tags", "lowercase", "chars"}


def test_extension_adds_the_files_words_and_test_tokens_find_them(folder):
    p, info, model = initialized(folder, embeddings_extend_vocab=True)
    assert info["words"][-4:] == ["saw", "zed", "Is", "ANN"]
    assert info["embeddings"]["added_words"] == 4
    assert info["embeddings"]["vocab_found"] == 6  # counted on the train vocabulary
    assert rows_of(info, model, ["saw", "zed", "Is", "ANN"]) == \
        [[5] * 3, [6] * 3, [7] * 3, [8] * 3]
    test = load_split(p, folder, "test", info)  # "Zed saw Paris ."
    words = info["words"]
    assert test.words[0, :4].tolist() == [words.index("zed"), words.index("saw"),
                                          words.index("Paris"), words.index(".")]
    plain = describe_data(params(), folder)
    assert load_split(params(), folder, "test", plain).words[0, :2].tolist() == [UNK_ID] * 2


def test_a_lowercase_vocabulary_extends_in_lowercase(folder):
    build_vocab(folder, lowercase=True)
    p, info, model = initialized(folder, embeddings_extend_vocab=True)
    assert info["words"][2:] == [".", "is", "paris", "ann", "big", "in", "small",
                                 "saw", "zed"]
    assert rows_of(info, model, ["paris", "ann", "saw"]) == [[2] * 3, [8] * 3, [5] * 3]
    assert Encoder(info).words(["ZED", "Saw", "Bob"]) == [10, 9, UNK_ID]


def test_the_lowercase_fallback_comes_only_with_the_extension(folder):
    info = describe_data(params(), folder)
    info["words"].append("zed")  # as an older checkpoint's vocabulary might hold it
    assert Encoder(info).words(["Zed", "zed"]) == [UNK_ID, len(info["words"]) - 1]


def test_a_missing_file_says_where_it_looked(folder, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(elsewhere)
    with pytest.raises(UserError) as exc:
        describe_data(params(embeddings_file="nope.txt", embedding_dim=3), folder)
    message = one_line(exc)
    assert str(elsewhere / "nope.txt") in message and str(folder / "nope.txt") in message


def test_a_relative_name_is_found_in_the_current_folder_first(folder, monkeypatch):
    monkeypatch.chdir(folder / "train")
    write_vectors(folder / "train" / "hand.txt", {"is": [9, 9, 9]})
    _, info, model = initialized(folder)
    assert info["embeddings"]["vocab_found"] == 1
    assert rows_of(info, model, ["is"]) == [[9] * 3]


def test_a_file_changed_after_it_was_described_is_refused(folder):
    p = params(embeddings_file="hand.txt", embedding_dim=3)
    info = describe_data(p, folder)
    write_vectors(folder / "hand.txt", {**HAND, "is": [0, 0, 0]})
    with pytest.raises(UserError) as exc:
        TASK.initialize_model(build_model(p, info), p, info)
    assert "changed since the data was described" in one_line(exc)


def test_freezing_keeps_the_embedding_from_the_optimizer(folder):
    p = params(embeddings_file="hand.txt", embedding_dim=3, freeze_embeddings=True,
               weight_decay=0.1)
    info = describe_data(p, folder)
    trainer = build_trainer(TASK, p, torch.device("cpu"), info)
    optimized = {id(q) for group in trainer.optimizer.param_groups for q in group["params"]}
    assert id(trainer.model.embedding.weight) not in optimized
    assert id(trainer.model.lstm.weight_ih_l0) in optimized
    assert rows_of(info, trainer.model, ["is"]) == [[3] * 3]


def test_a_module_of_functions_may_define_initialize_model():
    seen = []
    m = types.ModuleType("a_task")
    m.SCHEMA, m.METRICS, m.DEFAULT_METRIC = {}, {}, "loss"
    m.load_split = lambda params, data_dir, split: "split"
    m.build_model = lambda params: torch.nn.Linear(2, 2)
    m.loss_fn = lambda outputs, labels: outputs.sum()
    m.initialize_model = lambda model, params: seen.append(model)  # data_info left out
    task = ModuleTask("a_task", m)
    assert task.provides("initialize_model")
    task.initialize_model("model", "params", {"words": []})
    assert seen == ["model"]


# ---- training, checkpoints, evaluate, predict, restore -----------------------------------

DIM = 4


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("ner_vectors")
    TASK.write_sample_data(root / "raw")
    TASK.build_dataset(TASK.build_options(root / "raw", root / "data"))
    TASK.build_vocab(TASK.vocab_options(root / "data"))
    return root / "data"


def sample_vectors(sample: Path, path: Path) -> dict[str, list[float]]:
    """Vectors for 30 vocabulary words and 2 words the vocabulary lacks."""
    words = (sample / "words.txt").read_text(encoding="utf-8").split("\n")[2:32]
    rng = random.Random(0)
    vectors = {w: [rng.randint(-8, 8) / 8 for _ in range(DIM)]
               for w in [*words, "zzfoo", "zzbar"]}
    write_vectors(path, vectors)
    return vectors


def experiment(tmp_path, name, vectors_file, **extra):
    model_dir = tmp_path / name
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({
        "task": "ner", "learning_rate": 0.05, "batch_size": 8, "num_epochs": 2,
        "embedding_dim": DIM, "lstm_hidden_dim": 4, "embeddings_file": str(vectors_file),
        **extra}))
    return model_dir


def embedding_rows(path: Path) -> tuple[list[str], torch.Tensor]:
    state = load_checkpoint(path)
    return state["data_info"]["words"], state["model"]["embedding.weight"]


def test_frozen_vectors_stay_the_files_exactly_and_need_no_file_afterwards(sample, tmp_path):
    vectors_file = tmp_path / "vectors.txt"
    vectors = sample_vectors(sample, vectors_file)
    model_dir = experiment(tmp_path, "frozen", vectors_file, freeze_embeddings=True)
    train(model_dir, sample, console=False)
    log = (model_dir / "train.log").read_text(encoding="utf-8")
    assert "pretrained word vectors" in log and "embeddings frozen" in log
    for name in ("best.pt", "last.pt"):
        words, weight = embedding_rows(model_dir / name)
        # 30 words as written, and a few more through their lowercase form ("The").
        matched = {i: vectors.get(w, vectors.get(w.lower())) for i, w in enumerate(words)
                   if i >= 2 and (w in vectors or w.lower() in vectors)}
        assert len(matched) > 30 and set(range(2, 32)) <= set(matched)
        for i, vector in matched.items():
            assert torch.equal(weight[i], torch.tensor(vector))
        file_rows = torch.tensor(list(vectors.values()))
        assert not any(torch.equal(row, v) for i, row in enumerate(weight)
                       if i not in matched for v in file_rows)
        assert torch.equal(weight[0], torch.zeros(DIM))
    info = load_checkpoint(model_dir / "best.pt")["data_info"]["embeddings"]
    assert info["file"] == str(vectors_file)
    assert info["sha256"] == hashlib.sha256(vectors_file.read_bytes()).hexdigest()
    assert info["vocab_found"] == len(matched) and info["added_words"] == 0
    assert f"{len(matched)} of {len(words) - 2} vocabulary words found" in log

    vectors_file.unlink()  # evaluate and predict read the checkpoint, never the file
    metrics, _ = evaluate(model_dir, sample)
    assert "f1" in metrics
    _, rows = predict(model_dir, ["John lives in Paris ."])
    assert len(rows[0]["tags"]) == 5


def test_vectors_that_are_not_frozen_train(sample, tmp_path):
    vectors_file = tmp_path / "vectors.txt"
    vectors = sample_vectors(sample, vectors_file)
    model_dir = experiment(tmp_path, "trained", vectors_file, num_epochs=1)
    train(model_dir, sample, console=False)
    words, weight = embedding_rows(model_dir / "last.pt")
    assert not torch.equal(weight[2], torch.tensor(vectors[words[2]]))  # the most frequent


def test_a_restore_needs_the_same_file(sample, tmp_path):
    vectors_file = tmp_path / "vectors.txt"
    vectors = sample_vectors(sample, vectors_file)
    model_dir = experiment(tmp_path, "resumed", vectors_file, num_epochs=1,
                           freeze_embeddings=True, embeddings_extend_vocab=True)
    train(model_dir, sample, console=False)
    words, _ = embedding_rows(model_dir / "last.pt")
    assert words[-2:] == ["zzfoo", "zzbar"]
    train(model_dir, sample, restore="last", overrides={"num_epochs": 2}, console=False)
    state = load_checkpoint(model_dir / "last.pt")
    assert state["epoch"] == 2
    assert torch.equal(state["model"]["embedding.weight"][-1], torch.tensor(vectors["zzbar"]))

    # unfreezing on a restore would hand the optimizer a group it never had: one line
    with pytest.raises(UserError, match="restore with the params it was trained with"):
        train(model_dir, sample, restore="last",
              overrides={"num_epochs": 3, "freeze_embeddings": False}, console=False)
    write_vectors(vectors_file, {**vectors, "zzbaz": [0.0] * DIM})
    with pytest.raises(UserError) as exc:
        train(model_dir, sample, restore="last", overrides={"num_epochs": 3}, console=False)
    assert "embeddings." in one_line(exc) and "words" in str(exc.value)


def test_the_cli_says_a_dimension_mismatch_in_one_line(sample, tmp_path, capsys):
    vectors_file = tmp_path / "vectors.txt"
    sample_vectors(sample, vectors_file)
    model_dir = experiment(tmp_path, "wrong_dim", vectors_file, embedding_dim=DIM + 1)
    assert main(["train", "--model-dir", str(model_dir), "--data-dir", str(sample)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert f"vectors of {DIM} values, but embedding_dim is {DIM + 1}" in err


# The rows of docs/errors.md these tests prove: command, a fragment of the message shown
# there, and the tests. test_bad_input checks the table against this.
ROWS = {
    "embeddings-file-missing": ("train", "not found (looked for", [
        test_a_missing_file_says_where_it_looked]),
    "embeddings-dim-mismatch": ("train", "values, but embedding_dim is", [
        test_a_broken_file_is_refused_in_one_line_naming_file_and_line,
        test_the_cli_says_a_dimension_mismatch_in_one_line]),
    "embeddings-line-broken": ("train", "values after the word, the vectors have", [
        test_a_broken_file_is_refused_in_one_line_naming_file_and_line]),
}
