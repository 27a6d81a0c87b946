"""build-dataset and build-vocab for NER: corpus -> train/val/test splits -> vocabularies.

Input: the Kaggle ner_dataset.csv (or its .zip) or a CoNLL column file, or a folder
holding one. Output: OUT/{train,val,test}/{sentences.txt,labels.txt} and
OUT/build_report.json; build-vocab then adds words.txt, tags.txt, dataset_params.json.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path
from typing import Any

from torchstarter.errors import UserError
from torchstarter.tasks.ner.corpus import (
    FORMATS,
    Sentence,
    clean_token,
    detect_format,
    locate_corpus,
    read_corpus,
    read_split,
    write_split,
)
from torchstarter.tasks.ner.entities import first_non_bio
from torchstarter.tasks.ner.vocab import TAGS_FILE, Vocab, build_vocab, tag_sort_key
from torchstarter.utils.atomic import write_json
from torchstarter.utils.folders import check_apart, replace_folder

SPLITS = ("train", "val", "test")


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The build-dataset flags of the NER task (the CLI adds data, output, seed, overwrite)."""
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="corpus format: kaggle (ner_dataset.csv or .zip), conll (token "
                             "first, tag last, blank line between sentences) or auto "
                             "(default: guess from the file)")
    parser.add_argument("--encoding", default="utf-8",
                        help="text encoding of CoNLL files (default utf-8; the Kaggle CSV is "
                             "always windows-1252)")
    parser.add_argument("--keep-order", "--keep_order", action="store_true",
                        help="split sentences in file order instead of shuffling with --seed")
    parser.add_argument("--train-fraction", "--train_fraction", type=float, default=0.7,
                        help="share of sentences for training (default 0.7)")
    parser.add_argument("--val-fraction", "--val_fraction", type=float, default=0.15,
                        help="share of sentences for validation (default 0.15); test gets "
                             "the rest")


def add_vocab_arguments(parser: argparse.ArgumentParser) -> None:
    """The build-vocab flags; defaults keep every train word and its case."""
    parser.add_argument("--min-count", "--min_count", type=int, default=1,
                        help="keep words seen at least this often; rarer ones become UNK "
                             "(default 1)")
    parser.add_argument("--lowercase", action="store_true",
                        help="lowercase words before counting and encoding")
    parser.add_argument("--include-eval-splits", "--include_eval_splits", action="store_true",
                        help="also take words from val and test (leaks them into the "
                             "vocabulary; off by default)")


def split_sizes(n: int, train_fraction: float, val_fraction: float) -> tuple[int, int, int]:
    """Sentences per split; refuses fractions or a corpus that would leave a split empty."""
    if not 0 < train_fraction < 1:
        raise UserError(f"--train-fraction {train_fraction}: must lie strictly between "
                        f"0 and 1")
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction {val_fraction}: must lie strictly between 0 and 1")
    if train_fraction + val_fraction >= 1:
        raise UserError(f"--train-fraction {train_fraction} plus --val-fraction "
                        f"{val_fraction} leave nothing for test; make their sum below 1")
    n_train = round(n * train_fraction)
    n_val = round(n * val_fraction)
    n_test = n - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise UserError(f"the corpus has only {n} sentences: too few for a "
                        f"{train_fraction}/{val_fraction} train/val split with a non-empty "
                        f"test split; use a larger corpus")
    return n_train, n_val, n_test


def plan_split(sentences: list[Sentence], train_fraction: float, val_fraction: float,
               seed: int, keep_order: bool = False) -> dict[str, list[Sentence]]:
    """Shuffle with `seed` (unless keep_order) and cut: the same seed gives the same split."""
    n_train, n_val, _ = split_sizes(len(sentences), train_fraction, val_fraction)
    order = list(sentences)
    if not keep_order:
        random.Random(seed).shuffle(order)
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}


def build_dataset(args: argparse.Namespace) -> list[str]:
    """Split a corpus into train/val/test folders; returns lines for the user to check it.

    Everything is read and split before anything is written, and the output appears in
    one rename, so a bad corpus or a crash never leaves a half-built folder.
    """
    raw, out = Path(args.data_dir), Path(args.output_dir)
    corpus = locate_corpus(raw)
    check_apart(out, corpus, "the corpus")
    if raw.is_dir():
        check_apart(out, raw, "the raw data in --data-dir", may_lie_inside=True)
    fmt = detect_format(corpus) if args.format == "auto" else args.format
    sentences = read_corpus(corpus, fmt, args.encoding)
    bad = first_non_bio([tags for _, tags in sentences])
    if bad is not None:
        raise UserError(f"{corpus}: sentence {bad[0] + 1} has tag {bad[1]!r}, which is not BIO "
                        f"(O, B-<type> or I-<type>); convert the corpus tags to BIO first")
    splits = plan_split(sentences, args.train_fraction, args.val_fraction, args.seed,
                        args.keep_order)
    tag_counts = {name: Counter(t for _, tags in part for t in tags)
                  for name, part in splits.items()}
    changed = sum(1 for tokens, _ in sentences for t in tokens if clean_token(t) != t)

    def write(tmp: Path) -> None:
        for name in SPLITS:
            write_split(tmp / name, splits[name])
        write_json(tmp / "build_report.json", {
            "source": str(corpus.resolve()), "format": fmt, "seed": args.seed,
            "keep_order": args.keep_order, "train_fraction": args.train_fraction,
            "val_fraction": args.val_fraction,
            "splits": {name: {"sentences": len(part),
                              "tokens": sum(len(tokens) for tokens, _ in part),
                              "tags": dict(sorted(tag_counts[name].items(),
                                                  key=lambda kv: tag_sort_key(kv[0])))}
                       for name, part in splits.items()},
            "tokens_with_whitespace_replaced": changed,
        })

    replace_folder(out, write, overwrite=args.overwrite, mark="build_report.json")

    order = "file order" if args.keep_order else f"shuffled with seed {args.seed}"
    lines = [f"format: {fmt} ({corpus}); {len(sentences)} sentences, {order}"]
    for name in SPLITS:
        part = splits[name]
        lines.append(f"{name:5s}: {len(part):7d} sentences {sum(len(t) for t, _ in part):9d} "
                     f"tokens")
    all_tags = sorted(set().union(*tag_counts.values()), key=tag_sort_key)
    width = max(len(t) for t in all_tags)
    lines.append(f"{'tag':{width}s} " + " ".join(f"{name:>8s}" for name in SPLITS))
    for tag in all_tags:
        lines.append(f"{tag:{width}s} "
                     + " ".join(f"{tag_counts[name][tag]:8d}" for name in SPLITS))
    missing = [t for t in all_tags if not tag_counts["train"][t]]
    if missing:
        lines.append(f"tags never seen in train: {', '.join(missing)}")
    if changed:
        lines.append(f"{changed} token{'s' if changed > 1 else ''} held whitespace, written "
                     f"with '_' in its place")
    lines.append(f"wrote {out}; next: torchstarter build-vocab --data-dir {out}")
    return lines


def build_vocab_command(args: argparse.Namespace) -> list[str]:
    """build_vocab plus the numbers that tell whether min_count and lowercase fit the data."""
    data_dir = Path(args.data_dir)
    params: dict[str, Any] = build_vocab(data_dir, args.min_count, args.lowercase,
                                         args.include_eval_splits)
    vocab = Vocab.load(data_dir)
    val_tokens = [t for tokens, _ in read_split(data_dir / "val") for t in tokens]
    unknown = sum(1 for i in vocab.encode_words(val_tokens) if i == vocab.unk_id)
    rate = unknown / len(val_tokens) if val_tokens else 0.0
    case = ", lowercased" if params["lowercase"] else ""
    return [
        f"sentences: train {params['train_size']}, val {params['val_size']}, "
        f"test {params['test_size']}",
        f"words: {params['vocab_size']} (with {params['pad_word']} and {params['unk_word']}) "
        f"from {params['vocab_from']}, min count {params['min_count']}{case}",
        f"tags: {params['number_of_tags']} ({', '.join(vocab.tags)}) from every split, "
        f"in {data_dir / TAGS_FILE}",
        f"val tokens not in the vocabulary (read as {params['unk_word']}): {rate:.1%}",
    ]
