"""The word and tag vocabularies of a built NER data folder.

build_vocab writes words.txt, tags.txt and dataset_params.json beside the splits;
Vocab.load reads them back and turns tokens and tags into ids.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from torchstarter.errors import UserError
from torchstarter.tasks.ner.corpus import read_split
from torchstarter.tasks.ner.entities import first_non_bio
from torchstarter.utils.atomic import atomic_write, write_json

PAD_WORD = "<pad>"
UNK_WORD = "UNK"
PAD_TAG_ID = -1  # padded label positions carry -1, which the loss and metrics skip

WORDS_FILE = "words.txt"
TAGS_FILE = "tags.txt"
PARAMS_FILE = "dataset_params.json"
SPLITS = ("train", "val", "test")


def tag_sort_key(tag: str) -> tuple[bool, str]:
    """Sort key putting "O" first, so its id is 0 whatever entity types a corpus has."""
    return tag != "O", tag


def _write_lines(path: Path, lines: list[str]) -> None:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data))


def build_vocab(data_dir: Path, min_count: int = 1, lowercase: bool = False,
                include_eval_splits: bool = False) -> dict[str, Any]:
    """Write the vocabularies; words come from train only so val/test scores stay honest.

    Tags come from every split: an evaluation that meets a tag the model has no output
    for could not be scored at all.
    """
    data_dir = Path(data_dir)
    if min_count < 1:
        raise UserError(f"--min-count {min_count}: must be at least 1")
    splits = {name: read_split(data_dir / name) for name in SPLITS}
    for name, sentences in splits.items():
        bad = first_non_bio([tags for _, tags in sentences])
        if bad is not None:
            raise UserError(f"{data_dir / name / 'labels.txt'}:{bad[0] + 1}: tag {bad[1]!r} is "
                            f"not BIO (O, B-<type> or I-<type>); the NER task reads BIO tags: "
                            f"convert the corpus and rebuild the splits")
    word_sources = SPLITS if include_eval_splits else ("train",)
    counts: Counter[str] = Counter()
    for name in word_sources:
        for tokens, _ in splits[name]:
            counts.update(t.lower() for t in tokens) if lowercase else counts.update(tokens)
    kept = sorted((w for w, c in counts.items() if c >= min_count and w not in
                   (PAD_WORD, UNK_WORD)), key=lambda w: (-counts[w], w))
    if counts and not kept:
        raise UserError(f"--min-count {min_count}: no word of {'+'.join(word_sources)} occurs "
                        f"that often (the most frequent, {counts.most_common(1)[0][0]!r}, "
                        f"{counts.most_common(1)[0][1]} times); lower it")
    words = [PAD_WORD, UNK_WORD, *kept]
    tags = sorted({t for sentences in splits.values() for _, ts in sentences for t in ts},
                  key=tag_sort_key)
    params = {
        "train_size": len(splits["train"]), "val_size": len(splits["val"]),
        "test_size": len(splits["test"]), "vocab_size": len(words),
        "number_of_tags": len(tags), "pad_word": PAD_WORD, "unk_word": UNK_WORD,
        "min_count": min_count, "lowercase": lowercase,
        "vocab_from": "+".join(word_sources),
    }
    _write_lines(data_dir / WORDS_FILE, words)
    _write_lines(data_dir / TAGS_FILE, tags)
    write_json(data_dir / PARAMS_FILE, params)
    return params


class Vocab:
    """Word and tag ids of one built data folder."""

    def __init__(self, words: list[str], tags: list[str], lowercase: bool = False,
                 folder: Path | None = None) -> None:
        self.words = list(words)
        self.tags = list(tags)
        self.lowercase = lowercase
        self.folder = folder
        self.word_ids = {w: i for i, w in enumerate(self.words)}
        self.tag_ids = {t: i for i, t in enumerate(self.tags)}
        self.pad_id = self.word_ids[PAD_WORD]
        self.unk_id = self.word_ids[UNK_WORD]

    @classmethod
    def load(cls, data_dir: Path) -> Vocab:
        """Read the files build_vocab wrote, refusing ones edited into an unusable state."""
        data_dir = Path(data_dir)
        words = _read_vocab_file(data_dir / WORDS_FILE)
        tags = _read_vocab_file(data_dir / TAGS_FILE)
        if words[:2] != [PAD_WORD, UNK_WORD]:
            raise UserError(f"{data_dir / WORDS_FILE}:1: must start with {PAD_WORD} and "
                            f"{UNK_WORD}; rebuild it with torchstarter build-vocab")
        params_file = data_dir / PARAMS_FILE
        try:
            params = json.loads(params_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{params_file}: missing; run torchstarter build-vocab on "
                            f"{data_dir} first") from None
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise UserError(f"{params_file}: not valid JSON ({type(exc).__name__}); rebuild "
                            f"it with torchstarter build-vocab") from None
        except OSError as exc:
            raise UserError(f"{params_file}: cannot read it ({exc.strerror}); rebuild it "
                            f"with torchstarter build-vocab") from None
        lowercase = params.get("lowercase", False) if isinstance(params, dict) else False
        if not isinstance(lowercase, bool):
            raise UserError(f"{params_file}: 'lowercase' must be true or false; rebuild it "
                            f"with torchstarter build-vocab")
        return cls(words, tags, lowercase, data_dir)

    def encode_words(self, tokens: list[str]) -> list[int]:
        """Ids of `tokens`; words the vocabulary never saw share the UNK id."""
        ids, unk = self.word_ids, self.unk_id
        if self.lowercase:
            return [ids.get(t.lower(), unk) for t in tokens]
        return [ids.get(t, unk) for t in tokens]

    def encode_tags(self, tags: list[str], where: str) -> list[int]:
        """Ids of `tags`; an unknown tag is an error at `where` (e.g. 'val/labels.txt:12')."""
        try:
            return [self.tag_ids[t] for t in tags]
        except KeyError as exc:
            source = self.folder / TAGS_FILE if self.folder is not None else TAGS_FILE
            raise UserError(f"{where}: tag {exc.args[0]!r} is not in {source}; rebuild the "
                            f"vocabulary with torchstarter build-vocab") from None


def _read_vocab_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: missing; run torchstarter build-vocab on {path.parent} "
                        f"first") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; rebuild it with torchstarter "
                        f"build-vocab") from None
    entries = text.split("\n")
    if entries and entries[-1] == "":
        entries.pop()
    seen: dict[str, int] = {}
    for lineno, entry in enumerate(entries, start=1):
        if not entry.strip() or entry != entry.strip():
            raise UserError(f"{path}:{lineno}: blank line or surrounding whitespace; one "
                            f"entry a line, rebuild it with torchstarter build-vocab")
        if entry in seen:
            raise UserError(f"{path}:{lineno}: {entry!r} repeats line {seen[entry]}; "
                            f"rebuild it with torchstarter build-vocab")
        seen[entry] = lineno
    if not entries:
        raise UserError(f"{path}: empty; rebuild it with torchstarter build-vocab")
    return entries
