import json

import pytest

from torchstarter.errors import UserError
from torchstarter.tasks.ner.corpus import write_split
from torchstarter.tasks.ner.vocab import (
    PAD_TAG_ID,
    PAD_WORD,
    UNK_WORD,
    Vocab,
    build_vocab,
)

TRAIN = [(["the", "cat", "sat", "The", "cat"], ["O", "B-per", "O", "O", "B-per"]),
         (["a", "dog", "sat", "UNK"], ["O", "B-org", "O", "O"])]
VAL = [(["the", "eagle"], ["O", "B-nat"])]
TEST = [(["zebra", "cat"], ["B-art", "I-art"])]


@pytest.fixture
def built(tmp_path):
    for name, sentences in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        write_split(tmp_path / name, sentences)
    return tmp_path


def read_lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_pad_and_unk_come_first_then_words_by_count_then_alphabetically(built):
    build_vocab(built)
    assert read_lines(built / "words.txt") == [
        PAD_WORD, UNK_WORD, "cat", "sat", "The", "a", "dog", "the"]
    vocab = Vocab.load(built)
    assert (vocab.pad_id, vocab.unk_id) == (0, 1)
    assert PAD_TAG_ID == -1


def test_words_come_from_train_only_so_a_test_only_word_is_unk(built):
    params = build_vocab(built)
    vocab = Vocab.load(built)
    assert vocab.encode_words(["zebra", "eagle", "cat"]) == [
        vocab.unk_id, vocab.unk_id, vocab.words.index("cat")]
    assert params["vocab_from"] == "train"


def test_include_eval_splits_takes_words_from_val_and_test_too(built):
    params = build_vocab(built, include_eval_splits=True)
    vocab = Vocab.load(built)
    assert vocab.unk_id not in vocab.encode_words(["zebra", "eagle"])
    assert params["vocab_from"] == "train+val+test"


def test_min_count_drops_rare_words_to_unk(built):
    build_vocab(built, min_count=2)
    assert read_lines(built / "words.txt") == [PAD_WORD, UNK_WORD, "cat", "sat"]
    vocab = Vocab.load(built)
    assert vocab.encode_words(["dog", "cat"]) == [vocab.unk_id, 2]


def test_min_count_below_one_is_a_user_error(built):
    with pytest.raises(UserError, match="--min-count 0"):
        build_vocab(built, min_count=0)


def test_lowercase_merges_cases_when_building_and_encoding(built):
    build_vocab(built, lowercase=True)
    words = read_lines(built / "words.txt")
    assert words[:3] == [PAD_WORD, UNK_WORD, "cat"] and "the" in words and "The" not in words
    vocab = Vocab.load(built)
    assert vocab.lowercase
    assert vocab.encode_words(["THE", "Cat"]) == [words.index("the"), words.index("cat")]
    assert json.loads((built / "dataset_params.json").read_text())["lowercase"] is True


def test_a_corpus_word_spelled_like_unk_is_not_listed_twice(built):
    build_vocab(built)
    words = read_lines(built / "words.txt")
    assert words.count(UNK_WORD) == 1


def test_tags_come_from_every_split_with_o_first(built):
    build_vocab(built)
    assert read_lines(built / "tags.txt") == ["O", "B-art", "B-nat", "B-org", "B-per", "I-art"]
    vocab = Vocab.load(built)
    assert vocab.encode_tags(["O", "I-art"], where="test/labels.txt:1") == [0, 5]


def test_dataset_params_describe_the_splits_and_the_vocabulary(built):
    params = build_vocab(built, min_count=1)
    on_disk = json.loads((built / "dataset_params.json").read_text())
    assert on_disk == params == {
        "train_size": 2, "val_size": 1, "test_size": 1, "vocab_size": 8,
        "number_of_tags": 6, "pad_word": PAD_WORD, "unk_word": UNK_WORD,
        "min_count": 1, "lowercase": False, "vocab_from": "train"}


def test_unknown_tag_is_a_user_error_naming_where_and_the_tag(built):
    build_vocab(built)
    with pytest.raises(UserError) as exc:
        Vocab.load(built).encode_tags(["O", "B-xyz"], where="val/labels.txt:7")
    message = str(exc.value)
    assert message.startswith("val/labels.txt:7:") and "'B-xyz'" in message
    assert "build-vocab" in message


@pytest.mark.parametrize("missing", ["words.txt", "tags.txt", "dataset_params.json"])
def test_loading_without_a_vocabulary_file_says_to_run_build_vocab(built, missing):
    build_vocab(built)
    (built / missing).unlink()
    with pytest.raises(UserError, match="torchstarter build-vocab") as exc:
        Vocab.load(built)
    assert str(exc.value).startswith(f"{built / missing}: missing")


@pytest.mark.parametrize("content, words", [
    ("cat\n<pad>\nUNK\n", "must start with"),
    ("<pad>\nUNK\ncat\ncat\n", "repeats line 3"),
    ("<pad>\nUNK\n\ncat\n", "blank line"),
])
def test_an_edited_words_file_that_cannot_work_is_a_user_error(built, content, words):
    build_vocab(built)
    (built / "words.txt").write_text(content)
    with pytest.raises(UserError, match=words) as exc:
        Vocab.load(built)
    assert str(exc.value).startswith(f"{built / 'words.txt'}:")


def test_building_needs_all_three_splits(built):
    for name in ("sentences.txt", "labels.txt"):
        (built / "test" / name).unlink()
    (built / "test").rmdir()
    with pytest.raises(UserError, match="build-dataset") as exc:
        build_vocab(built)
    assert str(exc.value).startswith(f"{built / 'test'}:")
    assert not (built / "words.txt").exists()
