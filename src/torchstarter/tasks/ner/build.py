"""build-dataset and build-vocab for NER: corpus -> train/val/test splits -> vocabularies.

Input: the Kaggle ner_dataset.csv (or its .zip) or a CoNLL column file, or a folder
holding one, or a folder holding a corpus's own split files (train.*, valid.*|dev.*|val.*,
test.*), which are kept as they ship, since results are only comparable on the official
test split. Output: OUT/{train,val,test}/{sentences.txt,labels.txt} and
OUT/build_report.json; build-vocab then adds words.txt, tags.txt, dataset_params.json.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchstarter.errors import UserError
from torchstarter.tasks.ner.corpus import (
    FORMATS,
    Sentence,
    clean_token,
    detect_format,
    locate_corpus,
    locate_split_files,
    read_conll,
    read_corpus,
    read_kaggle_csv,
    read_split,
    write_split,
)
from torchstarter.tasks.ner.entities import first_non_bio
from torchstarter.tasks.ner.vocab import TAGS_FILE, Vocab, build_vocab, tag_sort_key
from torchstarter.utils.atomic import write_json
from torchstarter.utils.folders import check_apart, replace_folder

SPLITS = ("train", "val", "test")
DEFAULT_TRAIN_FRACTION = 0.7
DEFAULT_VAL_FRACTION = 0.15


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
    parser.add_argument("--train-fraction", "--train_fraction", type=float,
                        default=DEFAULT_TRAIN_FRACTION,
                        help="share of sentences for training (default 0.7); not with a "
                             "corpus's own split files, unless --resplit")
    parser.add_argument("--val-fraction", "--val_fraction", type=float,
                        default=DEFAULT_VAL_FRACTION,
                        help="share of sentences for validation (default 0.15); test gets "
                             "the rest. With only train.* and test.* files: the share of "
                             "train.* held out for val")
    parser.add_argument("--resplit", action="store_true",
                        help="a folder of split files (train.*, valid.*|dev.*, test.*) is "
                             "kept as it ships; --resplit pools them and cuts new splits by "
                             "the fractions and --seed instead (results then no longer "
                             "compare with the official test split)")


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


@dataclass
class SplitPlan:
    """The three splits before anything is written, and where each came from."""

    splits: dict[str, list[Sentence]]
    source: Path
    formats: dict[str, str]  # file name -> format it was read as
    splits_from: str  # kept | val_carved_from_train | split_by_fractions | resplit
    split_files: dict[str, str]  # split -> the file (or files, joined by " + ") it came from
    described: list[str]  # the lines that say how the splits were made
    train_fraction: float | None
    val_fraction: float | None
    ignored: list[str] = field(default_factory=list)

    @property
    def sentences(self) -> list[Sentence]:
        return [s for name in SPLITS for s in self.splits[name]]


def read_corpus_file(path: Path, fmt: str, encoding: str, split: str | None = None
                     ) -> tuple[list[Sentence], str]:
    """One corpus file and the format it was read as; empty or non-BIO is refused.

    `split` names the split the file ships as, so that the error says which one is empty.
    """
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if split is None:
        sentences = read_corpus(path, fmt, encoding)
    else:
        sentences = read_kaggle_csv(path) if fmt == "kaggle" else read_conll(path, encoding)
        if not sentences:
            raise UserError(f"{path}: the {split} split holds no sentences; a split file must "
                            f"hold at least one (a truncated download?)")
    bad = first_non_bio([tags for _, tags in sentences])
    if bad is not None:
        raise UserError(f"{path}: sentence {bad[0] + 1} has tag {bad[1]!r}, which is not BIO "
                        f"(O, B-<type> or I-<type>); convert the corpus tags to BIO first")
    return sentences, fmt


def plan_one_corpus(raw: Path, out: Path, args: argparse.Namespace) -> SplitPlan:
    """One corpus file (or a folder holding one), cut by the fractions as always."""
    corpus = locate_corpus(raw)
    check_apart(out, corpus, "the corpus")
    if raw.is_dir():
        check_apart(out, raw, "the raw data in --data-dir", may_lie_inside=True)
    sentences, fmt = read_corpus_file(corpus, args.format, args.encoding)
    splits = plan_split(sentences, args.train_fraction, args.val_fraction, args.seed,
                        args.keep_order)
    order = "file order" if args.keep_order else f"shuffled with seed {args.seed}"
    return SplitPlan(
        splits=splits, source=corpus, formats={corpus.name: fmt},
        splits_from="split_by_fractions", split_files=dict.fromkeys(SPLITS, corpus.name),
        described=[f"format: {fmt} ({corpus}); {len(sentences)} sentences, {order}"],
        train_fraction=args.train_fraction, val_fraction=args.val_fraction)


def plan_split_files(raw: Path, out: Path, files: dict[str, Path], ignored: list[Path],
                     args: argparse.Namespace) -> SplitPlan:
    """A corpus's own split files: kept as they ship unless --resplit or a split is missing.

    train + val + test: kept, every sentence in file order. train + test: val carved from
    train with --seed. train alone: cut by the fractions like one corpus. --resplit pools
    them all (train, val, test order) and cuts by the fractions on purpose.
    """
    names = {split: path.name for split, path in files.items()}
    listed = ", ".join(names.values())
    resplit = bool(getattr(args, "resplit", False))
    if set(files) == {"train", "val"} and not resplit:
        raise UserError(f"{raw}: holds {names['train']} and {names['val']} but no test.* file; "
                        f"add the corpus's test file, or pass --resplit to pool them and cut "
                        f"train/val/test by the fractions")
    mode = ("split_by_fractions" if set(files) == {"train"} else "resplit" if resplit else
            "val_carved_from_train" if "val" not in files else "kept")
    # A fraction that cannot apply is refused rather than ignored: the user asked for a
    # split this layout does not make. The default value passes, so scripts keep working.
    by_fractions = ("split_by_fractions", "resplit")
    for flag, value, default, used_by in (
            ("--train-fraction", args.train_fraction, DEFAULT_TRAIN_FRACTION, by_fractions),
            ("--val-fraction", args.val_fraction, DEFAULT_VAL_FRACTION,
             (*by_fractions, "val_carved_from_train"))):
        if value != default and mode not in used_by:
            what = ("are kept as they ship" if mode == "kept" else
                    f"make train of {names['train']} less the val carved from it by "
                    f"--val-fraction")
            raise UserError(f"{flag} {value}: the split files in {raw} ({listed}) {what}, "
                            f"so it has no meaning here; drop it, or pass --resplit to pool "
                            f"the files and cut train/val/test by the fractions")
    for path in files.values():
        check_apart(out, path, "the corpus")
    check_apart(out, raw, "the raw data in --data-dir", may_lie_inside=True)
    read: dict[str, list[Sentence]] = {}
    formats: dict[str, str] = {}
    for split, path in files.items():
        read[split], formats[path.name] = read_corpus_file(path, args.format, args.encoding,
                                                           split)
    total = sum(len(part) for part in read.values())
    kinds = sorted(set(formats.values()))
    if len(kinds) == 1:
        described = [f"format: {kinds[0]} ({raw}: {listed}); {total} sentences"]
    else:
        described = ["format: " + ", ".join(f"{name} {fmt}" for name, fmt in formats.items())
                     + f" ({raw}); {total} sentences"]
    cut = f"{args.train_fraction}/{args.val_fraction}/rest"
    order = "in file order" if args.keep_order else f"shuffled with seed {args.seed}"
    train_fraction: float | None = args.train_fraction
    val_fraction: float | None = args.val_fraction
    if mode == "kept":
        splits = dict(read)
        split_files = dict(names)
        train_fraction = val_fraction = None
        described.append(f"splits: kept as the corpus ships them ({listed}), every sentence "
                         f"in file order")
    elif mode == "val_carved_from_train":
        splits = {"train": [], "val": [], "test": read["test"]}
        splits["train"], splits["val"] = carve_val(read["train"], args.val_fraction, args.seed,
                                                   args.keep_order, files["train"])
        split_files = {"train": names["train"], "val": names["train"], "test": names["test"]}
        train_fraction = None
        picked = ("the last ones (--keep-order)" if args.keep_order
                  else f"picked with seed {args.seed}")
        described.append(f"splits: train and test as the corpus ships them ({listed}); val "
                         f"carved from {names['train']}: {len(splits['val'])} of its "
                         f"{len(read['train'])} sentences (--val-fraction {args.val_fraction}), "
                         f"{picked}; both parts in file order")
    else:
        pool = [s for split in SPLITS for s in read.get(split, [])]
        splits = plan_split(pool, args.train_fraction, args.val_fraction, args.seed,
                            args.keep_order)
        if mode == "split_by_fractions":
            split_files = dict.fromkeys(SPLITS, names["train"])
            described.append(f"splits: only {names['train']} ships, so val and test are cut "
                             f"from it {cut}, {order}")
        else:
            split_files = dict.fromkeys(SPLITS, " + ".join(names.values()))
            described.append(f"splits: --resplit: {listed} pooled in that order and cut "
                             f"{cut}, {order}; the corpus's own splits are not kept")
    return SplitPlan(splits=splits, source=raw, formats=formats, splits_from=mode,
                     split_files=split_files, described=described,
                     train_fraction=train_fraction, val_fraction=val_fraction,
                     ignored=[p.name for p in ignored])


def carve_val(train: list[Sentence], val_fraction: float, seed: int, keep_order: bool,
              where: Path) -> tuple[list[Sentence], list[Sentence]]:
    """(train, val): --val-fraction of a train file held out, picked with `seed` (its tail
    with keep_order); both parts stay in file order, and the same seed picks the same."""
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction {val_fraction}: must lie strictly between 0 and 1")
    n = len(train)
    n_val = round(n * val_fraction)
    if not 1 <= n_val < n:
        left = "an empty val split" if n_val < 1 else "no train split"
        raise UserError(f"{where}: --val-fraction {val_fraction} of its {n} sentence"
                        f"{'' if n == 1 else 's'} carves {n_val} for val, which leaves {left}; "
                        f"change --val-fraction, or add the corpus's valid.* file")
    order = list(range(n))
    if keep_order:
        held = set(order[n - n_val:])
    else:
        random.Random(seed).shuffle(order)
        held = set(order[:n_val])
    return ([s for i, s in enumerate(train) if i not in held],
            [s for i, s in enumerate(train) if i in held])


def build_dataset(args: argparse.Namespace) -> list[str]:
    """Split a corpus into train/val/test folders; returns lines for the user to check it.

    Everything is read and split before anything is written, and the output appears in
    one rename, so a bad corpus or a crash never leaves a half-built folder.
    """
    raw, out = Path(args.data_dir), Path(args.output_dir)
    files, ignored = locate_split_files(raw) if raw.is_dir() else ({}, [])
    plan = (plan_split_files(raw, out, files, ignored, args) if files
            else plan_one_corpus(raw, out, args))
    splits = plan.splits
    tag_counts = {name: Counter(t for _, tags in part for t in tags)
                  for name, part in splits.items()}
    changed = sum(1 for tokens, _ in plan.sentences for t in tokens if clean_token(t) != t)
    kinds = sorted(set(plan.formats.values()))

    def write(tmp: Path) -> None:
        for name in SPLITS:
            write_split(tmp / name, splits[name])
        write_json(tmp / "build_report.json", {
            "source": str(plan.source.resolve()),
            "format": kinds[0] if len(kinds) == 1 else "mixed",
            "file_formats": plan.formats, "seed": args.seed,
            "keep_order": args.keep_order, "train_fraction": plan.train_fraction,
            "val_fraction": plan.val_fraction, "resplit": bool(getattr(args, "resplit", False)),
            "splits_from": plan.splits_from, "split_files": plan.split_files,
            "ignored_files": plan.ignored,
            "splits": {name: {"sentences": len(part),
                              "tokens": sum(len(tokens) for tokens, _ in part),
                              "tags": dict(sorted(tag_counts[name].items(),
                                                  key=lambda kv: tag_sort_key(kv[0])))}
                       for name, part in splits.items()},
            "tokens_with_whitespace_replaced": changed,
        })

    replace_folder(out, write, overwrite=args.overwrite, mark="build_report.json")

    lines = list(plan.described)
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
    if plan.ignored:
        lines.append(f"ignored: {', '.join(plan.ignored)} (not named train, valid/dev/val "
                     f"or test)")
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
