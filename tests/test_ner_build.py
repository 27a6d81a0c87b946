import argparse
import json
import zipfile
from pathlib import Path

import pytest

from torchstarter.errors import UserError
from torchstarter.tasks.ner.build import (
    add_build_arguments,
    add_vocab_arguments,
    build_dataset,
    build_vocab_command,
    split_sizes,
)
from torchstarter.tasks.ner.corpus import read_conll, read_corpus, read_split
from torchstarter.tasks.ner.vocab import Vocab

SAMPLE = (Path(__file__).resolve().parents[1] / "src" / "torchstarter" / "tasks" / "ner"
          / "sample" / "ner_sample.csv")


def build_args(data, out, *flags, seed=230, overwrite=False):
    parser = argparse.ArgumentParser()
    add_build_arguments(parser)
    args = parser.parse_args(list(flags))
    args.data_dir, args.output_dir, args.seed, args.overwrite = data, out, seed, overwrite
    return args


def vocab_args(data, *flags):
    parser = argparse.ArgumentParser()
    add_vocab_arguments(parser)
    args = parser.parse_args(list(flags))
    args.data_dir = data
    return args


@pytest.fixture
def conll_corpus(tmp_path):
    """100 sentences whose first token names them, so splits can be compared by name."""
    raw = tmp_path / "raw"
    raw.mkdir()
    blocks = [f"s{i} B-geo\nwent O\nhome O\n" for i in range(100)]
    (raw / "corpus.conll").write_text("\n".join(blocks))
    return raw


def names(folder):
    return [tokens[0] for tokens, _ in read_split(folder)]


def test_flags_take_both_spellings_and_default_to_70_15_15_shuffled():
    args = build_args(None, None)
    assert (args.format, args.keep_order, args.train_fraction, args.val_fraction) == (
        "auto", False, 0.7, 0.15)
    args = build_args(None, None, "--keep_order", "--train_fraction", "0.5",
                      "--val-fraction", "0.25", "--format", "conll")
    assert (args.format, args.keep_order, args.train_fraction, args.val_fraction) == (
        "conll", True, 0.5, 0.25)
    vocab = vocab_args(None, "--min_count", "3", "--lowercase", "--include_eval_splits")
    assert (vocab.min_count, vocab.lowercase, vocab.include_eval_splits) == (3, True, True)
    assert vars(vocab_args(None, "--min-count", "2", "--include-eval-splits"))["min_count"] == 2


def test_splits_are_70_15_15_and_hold_every_sentence_once(conll_corpus, tmp_path):
    lines = build_dataset(build_args(conll_corpus, tmp_path / "out"))
    sizes = {split: len(names(tmp_path / "out" / split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 70, "val": 15, "test": 15}
    everything = sum((names(tmp_path / "out" / s) for s in sizes), [])
    assert sorted(everything) == sorted(f"s{i}" for i in range(100))
    assert any(line.startswith("format: conll") for line in lines)
    assert any(line.startswith("train:      70 sentences") and "210 tokens" in line
               for line in lines)
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["splits"]["val"]["tags"] == {"O": 30, "B-geo": 15}


def test_the_same_seed_gives_the_same_split_and_another_seed_another(conll_corpus, tmp_path):
    build_dataset(build_args(conll_corpus, tmp_path / "a", seed=1))
    build_dataset(build_args(conll_corpus, tmp_path / "b", seed=1))
    build_dataset(build_args(conll_corpus, tmp_path / "c", seed=2))
    for split in ("train", "val", "test"):
        assert names(tmp_path / "a" / split) == names(tmp_path / "b" / split)
    assert names(tmp_path / "a" / "train") != names(tmp_path / "c" / "train")


def test_keep_order_splits_in_file_order(conll_corpus, tmp_path):
    build_dataset(build_args(conll_corpus, tmp_path / "out", "--keep-order"))
    assert names(tmp_path / "out" / "train") == [f"s{i}" for i in range(70)]
    assert names(tmp_path / "out" / "val") == [f"s{i}" for i in range(70, 85)]
    assert names(tmp_path / "out" / "test") == [f"s{i}" for i in range(85, 100)]


def test_an_existing_output_is_kept_unless_overwrite_and_only_its_own_is_replaced(
        conll_corpus, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="--overwrite"):
        build_dataset(build_args(conll_corpus, out))
    with pytest.raises(UserError, match="holds keep.txt but no build_report.json"):
        build_dataset(build_args(conll_corpus, out, overwrite=True))
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    build_dataset(build_args(conll_corpus, out))
    (out / "train" / "extra.txt").write_text("left by hand")
    build_dataset(build_args(conll_corpus, out, overwrite=True))
    assert not (out / "train" / "extra.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["build_report.json", "test", "train", "val"]


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_an_output_folder_overlapping_the_input_is_refused(conll_corpus, where):
    out = {"same": conll_corpus, "parent": conll_corpus.parent,
           "inside": conll_corpus / "corpus.conll" / "built"}[where]
    source = conll_corpus / "corpus.conll"
    with pytest.raises(UserError, match="overlaps the"):
        build_dataset(build_args(source, out, overwrite=True))
    assert (conll_corpus / "corpus.conll").is_file()


def test_a_failed_read_leaves_no_output_behind(tmp_path):
    raw = tmp_path / "bad.conll"
    raw.write_text("EU B-ORG\nlonely\n")
    with pytest.raises(UserError, match=f"{raw}:2:"):
        build_dataset(build_args(raw, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("train, val, words", [
    (0.0, 0.15, "--train-fraction 0.0"), (1.0, 0.15, "--train-fraction 1.0"),
    (0.7, 0.0, "--val-fraction 0.0"), (0.8, 0.2, "nothing for test"),
])
def test_fractions_that_leave_a_split_empty_are_user_errors(train, val, words):
    with pytest.raises(UserError, match=words):
        split_sizes(100, train, val)


def test_a_corpus_too_small_for_three_splits_is_a_user_error(tmp_path):
    raw = tmp_path / "tiny.conll"
    raw.write_text("a O\n\nb O\n")
    with pytest.raises(UserError, match="only 2 sentences"):
        build_dataset(build_args(raw, tmp_path / "out"))


def test_tokens_with_spaces_are_reported_and_written_with_underscores(tmp_path):
    raw = tmp_path / "ner_dataset.csv"
    rows = "".join(f'Sentence: {i},"New York",NNP,B-geo\n,hi,UH,O\n' for i in range(10))
    raw.write_text("Sentence #,Word,POS,Tag\n" + rows)
    lines = build_dataset(build_args(tmp_path, tmp_path / "out", "--keep-order"))
    assert "10 tokens held whitespace, written with '_'" in " ".join(lines)
    assert read_split(tmp_path / "out" / "train")[0] == (["New_York", "hi"], ["B-geo", "O"])


def test_sample_zip_builds_and_gets_a_vocabulary(tmp_path):
    archive = tmp_path / "raw" / "ner_dataset.csv.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(SAMPLE, "ner_dataset.csv")
    out = tmp_path / "data"
    lines = build_dataset(build_args(archive.parent, out))
    assert lines[0].startswith(f"format: kaggle ({archive})")
    total = sum(len(read_split(out / s)) for s in ("train", "val", "test"))
    assert total == len(read_corpus(SAMPLE))
    summary = build_vocab_command(vocab_args(out, "--min-count", "1"))
    vocab = Vocab.load(out)
    assert vocab.words[:2] == ["<pad>", "UNK"] and vocab.tags[0] == "O"
    assert len(vocab.tags) == len({t for _, tags in read_corpus(SAMPLE) for t in tags})
    assert any(line.startswith("words: ") and "from train" in line for line in summary)
    assert any(line.startswith("val tokens not in the vocabulary") for line in summary)


def test_format_flag_overrides_detection(tmp_path):
    raw = tmp_path / "corpus.csv"  # a .csv suffix alone would say kaggle
    raw.write_text("\n\n".join(f"w{i} O" for i in range(10)))
    build_dataset(build_args(raw, tmp_path / "out", "--format", "conll"))
    assert len(read_split(tmp_path / "out" / "train")) == 7
    assert len(read_conll(raw)) == 10
