"""How the NER task turns the vocabulary and raw text into ids."""

import pytest

from torchstarter.errors import UserError
from torchstarter.tasks.ner.corpus import write_split
from torchstarter.tasks.ner.data import Encoder, describe_data
from torchstarter.tasks.ner.predict import read_sentences
from torchstarter.tasks.ner.vocab import build_vocab
from torchstarter.tasks.registry import resolve_params

_, PARAMS = resolve_params({"task": "ner", "learning_rate": 1e-3, "batch_size": 2,
                            "num_epochs": 1, "char_embedding_dim": 4}, "test")


def built(tmp_path, tags=("B-per", "O"), lowercase=False):
    for split in ("train", "val", "test"):
        write_split(tmp_path / split, [(["Ann", "<pad>"], list(tags))])
    build_vocab(tmp_path, lowercase=lowercase)
    return tmp_path


def test_a_corpus_token_that_looks_like_padding_is_a_word_not_padding(tmp_path):
    info = describe_data(PARAMS, built(tmp_path))
    enc = Encoder(info)
    assert enc.words(["<pad>"]) != [0]


def test_characters_keep_their_case_with_a_lowercased_vocabulary(tmp_path):
    info = describe_data(PARAMS, built(tmp_path, lowercase=True))
    assert "A" in info["chars"] and "ann" in info["words"]


def test_tags_that_are_not_bio_are_refused_when_the_vocabulary_is_built(tmp_path):
    with pytest.raises(UserError, match=r"train/labels.txt:1: tag 'S-per' is not BIO"):
        built(tmp_path, tags=("S-per", "O"))


def test_a_tags_file_edited_to_hold_a_non_bio_tag_is_refused_by_train(tmp_path):
    folder = built(tmp_path)
    (folder / "tags.txt").write_text("S-per\nO\n", encoding="utf-8")
    with pytest.raises(UserError, match="tags.txt: .*BIO"):
        describe_data(PARAMS, folder)


def test_a_long_sentence_is_read_as_a_sentence_not_a_file_name():
    sentence = " ".join(["word"] * 200)
    assert read_sentences([sentence]) == [["word"] * 200]


@pytest.mark.parametrize("item", ["sentences.tx t", "John", "U.S.", "Hello world .",
                                  "and/or", "1/2", "http://example.com"])
def test_words_and_sentences_are_tagged_as_text(item):
    assert read_sentences([item]) == [item.split()]


@pytest.mark.parametrize("item", ["sentence.txt", "data/new.txt", "inputs.CSV",
                                  "x" * 300 + ".txt"])
def test_a_missing_file_name_is_an_error_not_a_one_word_sentence(item, tmp_path,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=rf"^{item}: not found; pass a text file"):
        read_sentences([item])


def test_a_folder_given_as_input_is_named_as_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "texts").mkdir()
    with pytest.raises(UserError, match=r"^texts/: a folder"):
        read_sentences(["texts/"])
