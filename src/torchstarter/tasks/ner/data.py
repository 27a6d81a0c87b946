"""Loading a built NER split into padded tensors once, and batching it by index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.batching import staged_indices
from torchstarter.errors import UserError
from torchstarter.tasks.ner.corpus import read_split
from torchstarter.tasks.ner.entities import TagScheme
from torchstarter.tasks.ner.vocab import PAD_TAG_ID, PAD_WORD, Vocab

MAX_WORD_CHARS = 20  # longer words keep their first characters for the char CNN
BUCKET_BATCHES = 50  # with bucketing, sort by length within windows of this many batches


def describe_data(params: Params, data_dir: Path) -> dict[str, Any]:
    """The vocabulary the model is built for; it travels inside every checkpoint."""
    vocab = Vocab.load(data_dir)
    try:
        TagScheme(vocab.tags)
    except ValueError as exc:
        raise UserError(f"{Path(data_dir) / 'tags.txt'}: {exc}; the NER task reads BIO tags "
                        f"(O, B-X, I-X): convert the corpus tags") from None
    chars: set[str] = set()
    if params.char_embedding_dim > 0:  # characters as written, even with a lowercased vocab
        for tokens, _ in read_split(Path(data_dir) / "train"):
            for token in tokens:
                chars.update(token)
    return {"words": vocab.words, "tags": vocab.tags, "lowercase": vocab.lowercase,
            "chars": sorted(chars)}


class Encoder:
    """Words, characters and tags to ids with the vocabulary of a checkpoint."""

    def __init__(self, info: dict[str, Any]):
        self.word_ids = {w: i for i, w in enumerate(info["words"])}
        self.word_ids.pop(PAD_WORD, None)  # a corpus token "<pad>" is a word, not padding
        self.tag_ids = {t: i for i, t in enumerate(info["tags"])}
        self.char_ids = {c: i + 2 for i, c in enumerate(info["chars"])}  # 0 pad, 1 unknown
        self.lowercase = info["lowercase"]
        self.unk = 1

    def words(self, tokens: list[str]) -> list[int]:
        get = self.word_ids.get
        if self.lowercase:
            return [get(t.lower(), self.unk) for t in tokens]
        return [get(t, self.unk) for t in tokens]

    def tags(self, tags: list[str], where: str) -> list[int]:
        try:
            return [self.tag_ids[t] for t in tags]
        except KeyError as exc:
            raise UserError(f"{where}: tag {exc.args[0]!r} is not one the model knows (tags.txt "
                            f"when it was trained); rebuild the vocabulary and retrain") from None

    def chars(self, form: str) -> list[int]:
        return [self.char_ids.get(c, 1) for c in form[:MAX_WORD_CHARS]]


class TokenData:
    """A split as padded [N, Lmax] tensors; a batch is cut to its longest sentence."""

    def __init__(self, words: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor,
                 forms: torch.Tensor | None = None, form_chars: torch.Tensor | None = None,
                 bucket: bool = False, pad_to_multiple: int = 1):
        self.words, self.tags, self.lengths = words, tags, lengths
        self.forms, self.form_chars = forms, form_chars
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
                         self.pad_to_multiple)

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
    folder = Path(data_dir) / split
    sentences = read_split(folder)
    enc = Encoder(info)
    n, width = len(sentences), max(len(tokens) for tokens, _ in sentences)
    words = torch.zeros(n, width, dtype=torch.long)
    tags = torch.full((n, width), PAD_TAG_ID, dtype=torch.long)
    lengths = torch.tensor([len(tokens) for tokens, _ in sentences], dtype=torch.long)
    for i, (tokens, labels) in enumerate(sentences):
        words[i, :len(tokens)] = torch.tensor(enc.words(tokens))
        tags[i, :len(tokens)] = torch.tensor(enc.tags(labels, f"{folder / 'labels.txt'}:{i + 1}"))
    forms = form_chars = None
    if params.char_embedding_dim > 0:
        forms, form_chars = _char_tables(sentences, enc, width)
    return TokenData(words, tags, lengths, forms, form_chars, params.bucket_by_length,
                     params.pad_to_multiple)


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
