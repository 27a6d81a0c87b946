"""Loading a built NER split into padded tensors once, and batching it by index.

Three options of issue 18 live here because they are about how words are read:
  lowercase_words  describe_data merges the vocabulary to lowercase (data_info says so)
  case_features    a case-shape id per token (CASE_* below), for the Tagger to embed
  unk_replace      the train split marks its singleton tokens; augment (replace_singletons)
                   turns some of them into UNK, so the UNK vector is trained
and pretrained word vectors (embeddings_file, embeddings.py): describe_data matches them
against the vocabulary, maybe extends it, and records what it found in data_info.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.batching import staged_indices
from torchstarter.errors import UserError
from torchstarter.tasks.ner import embeddings
from torchstarter.tasks.ner.corpus import read_split
from torchstarter.tasks.ner.entities import TagScheme
from torchstarter.tasks.ner.vocab import PAD_TAG_ID, PAD_WORD, Vocab

log = logging.getLogger("torchstarter")

MAX_WORD_CHARS = 20  # longer words keep their first characters for the char CNN
BUCKET_BATCHES = 50  # with bucketing, sort by length within windows of this many batches
UNK_ID = 1  # words.txt starts with <pad>, UNK (Vocab.load checks it)

# Case shapes of a token, id 0 being padding: what lowercasing the words throws away.
CASE_PAD, CASE_LOWER, CASE_UPPER, CASE_TITLE, CASE_DIGIT, CASE_OTHER = range(6)
NUM_CASES = 6

# Defaults of the NER options read with `option`: a task that subclasses NerTask with a
# schema of its own (what `torchstarter new` writes) has none of these keys in its params.
OPTION_DEFAULTS: dict[str, Any] = {"unk_replace": 0.0, "lowercase_words": False,
                                   "case_features": False, "class_weights": "none",
                                   "char_embedding_dim": 0, "embeddings_file": "",
                                   "freeze_embeddings": False,
                                   "embeddings_extend_vocab": False}


def option(params: Params, name: str) -> Any:
    """params[name], or its default when the task's schema has no such key."""
    return params.get(name, OPTION_DEFAULTS[name])


def case_shape(token: str) -> int:
    """The token's case shape: digit-bearing, all lower, ALL UPPER, Title, or other.

    Checked in that order; a single capital ("A", "I") counts as title, mixed case
    ("iPhone", "McDonald") and tokens without cased letters (",", "-") as other.
    """
    if any(c.isdigit() for c in token):
        return CASE_DIGIT
    cased = [c for c in token if c.islower() or c.isupper()]
    if not cased:
        return CASE_OTHER
    if all(c.islower() for c in cased):
        return CASE_LOWER
    if all(c.isupper() for c in cased):
        return CASE_UPPER if len(cased) > 1 else CASE_TITLE
    if cased[0].isupper() and all(c.islower() for c in cased[1:]):
        return CASE_TITLE
    return CASE_OTHER


def lowercased_words(words: list[str]) -> list[str]:
    """A vocabulary built with case, merged to lowercase: the first (most frequent) spelling
    of each lowercase form keeps its place, the others fold into it; <pad> and UNK stay 0, 1.

    A corpus token that lowercases to <pad> folds into nothing (it reads as UNK, as the
    token "<pad>" itself does). min_count was applied to the cased counts, so a word kept
    only because its spellings add up needs `build-vocab --lowercase` instead.
    """
    merged = list(words[:2])
    seen = {PAD_WORD}
    for word in words[2:]:
        low = word.lower()
        if low not in seen:
            seen.add(low)
            merged.append(low)
    return merged


def describe_data(params: Params, data_dir: Path) -> dict[str, Any]:
    """The vocabulary the model is built for; it travels inside every checkpoint."""
    vocab = Vocab.load(data_dir)
    try:
        TagScheme(vocab.tags)
    except ValueError as exc:
        raise UserError(f"{Path(data_dir) / 'tags.txt'}: {exc}; the NER task reads BIO tags "
                        f"(O, B-X, I-X): convert the corpus tags") from None
    chars: set[str] = set()
    if option(params, "char_embedding_dim") > 0:  # characters as written, even lowercased
        for tokens, _ in read_split(Path(data_dir) / "train"):
            for token in tokens:
                chars.update(token)
    words, lowercase = vocab.words, vocab.lowercase
    if option(params, "lowercase_words") and not lowercase:  # else: as the vocabulary says
        words, lowercase = lowercased_words(words), True
    info = {"words": words, "tags": vocab.tags, "lowercase": lowercase,
            "chars": sorted(chars)}
    if option(params, "embeddings_file"):  # absent otherwise: old checkpoints still match
        info["words"], info["embeddings"] = describe_embeddings(params, data_dir, info)
    return info


def describe_embeddings(params: Params, data_dir: Path, info: dict[str, Any]
                        ) -> tuple[list[str], dict[str, Any]]:
    """The vocabulary (extended with the file's words when embeddings_extend_vocab asks)
    and data_info["embeddings"]: which file, its sha256, and what it covers.

    vocab_found and vocab_coverage count the train vocabulary (without <pad> and UNK)
    before any extension; val_token_coverage is the share of val tokens whose id, as
    load_split will look it up, has a pretrained vector.
    """
    name, dim = option(params, "embeddings_file"), params.embedding_dim
    extend = bool(option(params, "embeddings_extend_vocab"))
    path = embeddings.resolve(name, data_dir)
    words, lowercase = info["words"], info["lowercase"]
    vectors = embeddings.read_vectors(path, dim, None if extend else
                                      embeddings.wanted(words[embeddings.FIRST_WORD_ID:]),
                                      values=False)
    embeddings.remember(name, vectors.sha256, path)
    train_words = len(words) - embeddings.FIRST_WORD_ID
    found = len(embeddings.matched_ids(words, vectors))
    added = embeddings.extension(words, vectors, lowercase) if extend else []
    words = [*words, *added]
    described = {"file": name, "sha256": vectors.sha256, "dim": dim,
                 "vectors_in_file": vectors.lines, "vocab_found": found,
                 "vocab_coverage": embeddings.ratio(found, train_words),
                 "val_token_coverage": None, "added_words": len(added),
                 "extend_vocab": extend}
    val = Path(data_dir) / "val"
    if val.is_dir():
        with_vector = set(embeddings.matched_ids(words, vectors))
        enc = Encoder({**info, "words": words, "embeddings": described})
        ids = [i for tokens, _ in read_split(val) for i in enc.words(tokens)]
        described["val_token_coverage"] = embeddings.ratio(
            sum(1 for i in ids if i in with_vector), len(ids))
    return words, described


def log_embeddings(info: dict[str, Any], frozen: bool) -> None:
    """One line at train start: what the vectors file gave the vocabulary."""
    e = info["embeddings"]
    val = "no val split to count" if e["val_token_coverage"] is None else \
        f"{100 * e['val_token_coverage']:.1f}% of val tokens have a vector"
    log.info("pretrained word vectors %s (%d vectors of dim %d): %d of %d vocabulary words "
             "found (%.1f%%), %d words added; %s; embeddings %s", e["file"],
             e["vectors_in_file"], e["dim"], e["vocab_found"],
             len(info["words"]) - embeddings.FIRST_WORD_ID - e["added_words"],
             100 * e["vocab_coverage"], e["added_words"], val,
             "frozen" if frozen else "trained")


class Encoder:
    """Words, characters and tags to ids with the vocabulary of a checkpoint."""

    def __init__(self, info: dict[str, Any]):
        self.word_ids = {w: i for i, w in enumerate(info["words"])}
        self.word_ids.pop(PAD_WORD, None)  # a corpus token "<pad>" is a word, not padding
        self.tag_ids = {t: i for i, t in enumerate(info["tags"])}
        self.char_ids = {c: i + 2 for i, c in enumerate(info["chars"])}  # 0 pad, 1 unknown
        self.lowercase = info["lowercase"]
        # A cased vocabulary extended from a vectors file also finds "PARIS" as "paris"
        # (GloVe is lowercase); only then, so that older checkpoints read as they did.
        self.lower_fallback = not self.lowercase and \
            bool((info.get("embeddings") or {}).get("extend_vocab"))
        self.unk = UNK_ID
        self._known_lower: set[str] | None = None
        self._cases: dict[str, int] = {}

    def words(self, tokens: list[str]) -> list[int]:
        get = self.word_ids.get
        if self.lowercase:
            return [get(t.lower(), self.unk) for t in tokens]
        if self.lower_fallback:
            return [get(t) or get(t.lower(), self.unk) for t in tokens]  # ids are >= 1
        return [get(t, self.unk) for t in tokens]

    def cases(self, tokens: list[str]) -> list[int]:
        """Case-shape ids (case_shape), from the tokens as written."""
        cache = self._cases
        out = []
        for t in tokens:
            shape = cache.get(t)
            if shape is None:
                shape = cache[t] = case_shape(t)
            out.append(shape)
        return out

    def unknown(self, tokens: list[str]) -> list[bool]:
        """Out of the vocabulary in any casing: the tokens that read as UNK whether or not
        the words are lowercased, so the OOV scores of cased and lowercased runs compare."""
        if self._known_lower is None:
            self._known_lower = {w.lower() for w, i in self.word_ids.items() if i != self.unk}
        known = self._known_lower
        return [t.lower() not in known for t in tokens]

    def tags(self, tags: list[str], where: str) -> list[int]:
        try:
            return [self.tag_ids[t] for t in tags]
        except KeyError as exc:
            raise UserError(f"{where}: tag {exc.args[0]!r} is not one the model knows (tags.txt "
                            f"when it was trained); rebuild the vocabulary and retrain") from None

    def chars(self, form: str) -> list[int]:
        return [self.char_ids.get(c, 1) for c in form[:MAX_WORD_CHARS]]


class TokenData:
    """A split as padded [N, Lmax] tensors; a batch is cut to its longest sentence.

    Optional per-token tensors, each [N, Lmax] and absent unless asked for: `cases`
    (case-shape ids, batched as "cases"), `singletons` (train words seen once, batched
    as "singletons" for augment) and `oov` (out of the vocabulary in any casing; stays
    on the host for the evaluation report, never batched).
    """

    def __init__(self, words: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor,
                 forms: torch.Tensor | None = None, form_chars: torch.Tensor | None = None,
                 bucket: bool = False, pad_to_multiple: int = 1, *,
                 cases: torch.Tensor | None = None, singletons: torch.Tensor | None = None,
                 oov: torch.Tensor | None = None):
        self.words, self.tags, self.lengths = words, tags, lengths
        self.forms, self.form_chars = forms, form_chars
        self.cases, self.singletons, self.oov = cases, singletons, oov
        self.bucket = bucket
        self.pad_to_multiple = pad_to_multiple
        self.lengths_cpu = lengths.cpu()  # batch widths are read here, without a device sync

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def device(self) -> torch.device:
        return self.words.device

    def to(self, device: torch.device) -> TokenData:
        if self.words.device == device:
            return self
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return TokenData(move(self.words), move(self.tags), move(self.lengths),
                         move(self.forms), move(self.form_chars), self.bucket,
                         self.pad_to_multiple, cases=move(self.cases),
                         singletons=move(self.singletons), oov=self.oov)

    def get_batch(self, index: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        index = index.cpu()
        return self._batch(index, index.to(self.words.device, non_blocking=True))

    def iter_batches(self, groups: list[torch.Tensor]
                     ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        for host_index, index in staged_indices(groups, self.words.device):
            yield self._batch(host_index, index)

    def _batch(self, host_index: torch.Tensor, index: torch.Tensor
               ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The batch of `index` (on the data's device); widths come from the host copy."""
        host_lengths = self.lengths_cpu[host_index]
        width = self.batch_width(int(host_lengths.max()))  # host only: no sync
        inputs = {"words": self.words[index, :width], "lengths": self.lengths[index],
                  "host_lengths": host_lengths}
        if self.forms is not None:
            inputs["chars"] = self.form_chars[self.forms[index, :width]]
        if self.cases is not None:
            inputs["cases"] = self.cases[index, :width]
        if self.singletons is not None:
            inputs["singletons"] = self.singletons[index, :width]
        return inputs, self.tags[index, :width]

    def batch_width(self, longest: int) -> int:
        """The longest sentence, rounded up to pad_to_multiple (never past the split's width).

        Rounding leaves a handful of widths per split instead of one per sentence length,
        which is what compiled steps and CUDA graphs need: a new shape means a new graph.
        """
        step = self.pad_to_multiple
        return min(-(-longest // step) * step, self.words.shape[1])

    def batch_indices(self, order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
        """Plain chunks of the epoch order, or, with bucketing, chunks of similar length.

        Bucketing sorts each window of BUCKET_BATCHES batches of the (seeded) order by
        length, so it stays a function of (seed, epoch) and uses every sentence once.
        """
        if not self.bucket:
            return list(torch.split(order, batch_size))
        batches = []
        for window in torch.split(order, batch_size * BUCKET_BATCHES):
            lengths = self.lengths_cpu[window.cpu()]
            ranked = window[torch.argsort(lengths, stable=True).to(window.device)]
            batches.extend(torch.split(ranked, batch_size))
        return batches


def load_split(params: Params, data_dir: Path, split: str, info: dict[str, Any]) -> TokenData:
    """Encode the split once. The train split also marks its singletons when unk_replace
    asks for them; every split marks its out-of-vocabulary tokens for the report."""
    folder = Path(data_dir) / split
    sentences = read_split(folder)
    enc = Encoder(info)
    with_cases = bool(option(params, "case_features"))
    n, width = len(sentences), max(len(tokens) for tokens, _ in sentences)
    words = torch.zeros(n, width, dtype=torch.long)
    tags = torch.full((n, width), PAD_TAG_ID, dtype=torch.long)
    cases = torch.zeros(n, width, dtype=torch.long) if with_cases else None
    lengths = torch.tensor([len(tokens) for tokens, _ in sentences], dtype=torch.long)
    for i, (tokens, labels) in enumerate(sentences):
        words[i, :len(tokens)] = torch.tensor(enc.words(tokens))
        tags[i, :len(tokens)] = torch.tensor(enc.tags(labels, f"{folder / 'labels.txt'}:{i + 1}"))
        if cases is not None:
            cases[i, :len(tokens)] = torch.tensor(enc.cases(tokens))
    oov = _oov_mask(words, sentences, enc)
    forms = form_chars = None
    if option(params, "char_embedding_dim") > 0:
        forms, form_chars = _char_tables(sentences, enc, width)
    singletons = None
    if split == "train" and option(params, "unk_replace") > 0:
        singletons = singleton_mask(words, lengths, len(info["words"]))
    data = TokenData(words, tags, lengths, forms, form_chars, params.bucket_by_length,
                     params.pad_to_multiple, cases=cases, singletons=singletons, oov=oov)
    data.tokens = [tokens for tokens, _ in sentences]  # evaluate's per-sentence rows
    return data


def _oov_mask(words: torch.Tensor, sentences: list, enc: Encoder) -> torch.Tensor:
    """Tokens out of the vocabulary in any casing (Encoder.unknown). Only a token read as
    UNK can be one, so only those few are looked at again, lowercased: nearly free."""
    oov = words == UNK_ID
    if not enc.lowercase:  # a cased lookup also misses "PARIS" when only "Paris" is known
        rows, cols = oov.nonzero(as_tuple=True)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if not enc.unknown([sentences[r][0][c]])[0]:
                oov[r, c] = False
    return oov


def singleton_mask(words: torch.Tensor, lengths: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Real tokens whose word id occurs exactly once in `words` (the train split).

    Counted on the ids as looked up, so with lowercase_words "Paris" and "paris" add up;
    UNK is never a singleton (nothing to replace). Computed at load, once, on the host.
    """
    real = torch.arange(words.shape[1]) < lengths[:, None]
    counts = torch.bincount(words[real], minlength=vocab_size)
    return real & (counts[words] == 1) & (words != UNK_ID)


def replace_singletons(inputs: dict[str, torch.Tensor], rate: float,
                       generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The batch with each singleton word made UNK with probability `rate`.

    One uniform draw per position of the batch from `generator` (the engine's augmentation
    generator, saved in mid-epoch checkpoints), so the same generator state gives the same
    replacement; masked_fill reads nothing back to the host.
    """
    singles = inputs["singletons"]
    draw = torch.rand(singles.shape, generator=generator, device=generator.device)
    hit = singles & (draw.to(singles.device, non_blocking=True) < rate)
    return {**inputs, "words": inputs["words"].masked_fill(hit, UNK_ID)}


def _char_tables(sentences: list, enc: Encoder, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface-form ids per token and the characters of each form (unknown words too)."""
    form_ids: dict[str, int] = {"": 0}
    forms = torch.zeros(len(sentences), width, dtype=torch.long)
    for i, (tokens, _) in enumerate(sentences):
        forms[i, :len(tokens)] = torch.tensor([form_ids.setdefault(t, len(form_ids))
                                               for t in tokens])
    form_chars = torch.zeros(len(form_ids), MAX_WORD_CHARS, dtype=torch.long)
    for form, i in form_ids.items():
        ids = enc.chars(form)
        if ids:
            form_chars[i, :len(ids)] = torch.tensor(ids)
    return forms, form_chars
