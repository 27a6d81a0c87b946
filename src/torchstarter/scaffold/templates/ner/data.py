"""The vocabulary the model is built for, and reading a built split into padded tensors.

Edit this file for data in another layout. A split folder holds sentences.txt (tokens
separated by spaces, one sentence a line) and labels.txt (the tags, aligned); the data
folder holds words.txt and tags.txt, written by `torchstarter build-vocab`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.errors import UserError
from torchstarter.tasks.ner.corpus import read_split
from torchstarter.tasks.ner.data import Encoder, TokenData
from torchstarter.tasks.ner.entities import TagScheme
from torchstarter.tasks.ner.vocab import PAD_TAG_ID, Vocab


def describe_data(params: Params, data_dir: Path) -> dict[str, Any]:
    """What the model depends on in the data: its words and tags.

    The engine saves this dict in every checkpoint and passes it to build_model and
    load_split, so evaluate and predict rebuild the model that was trained even if the
    data folder changes later.
    """
    vocab = Vocab.load(data_dir)
    try:
        TagScheme(vocab.tags)
    except ValueError as exc:
        raise UserError(f"{Path(data_dir) / 'tags.txt'}: {exc}; this task reads BIO tags "
                        f"(O, B-X, I-X): convert the corpus tags") from None
    # "chars" stays empty: this network has no character features (predict expects the key).
    return {"words": vocab.words, "tags": vocab.tags, "lowercase": vocab.lowercase,
            "chars": []}


def load_split(params: Params, data_dir: Path, split: str, data_info: dict[str, Any]
               ) -> TokenData:
    """Encode every sentence of the split once, padded to the longest one.

    Words the vocabulary lacks become UNK; padded positions get word id 0 (<pad>) and
    tag -1, which the loss and the metrics skip. A batch is cut to its longest sentence.
    """
    folder = Path(data_dir) / split
    sentences = read_split(folder)  # [(tokens, tags), ...]
    encoder = Encoder(data_info)
    width = max(len(tokens) for tokens, _ in sentences)
    words = torch.zeros(len(sentences), width, dtype=torch.long)
    tags = torch.full((len(sentences), width), PAD_TAG_ID, dtype=torch.long)
    lengths = torch.tensor([len(tokens) for tokens, _ in sentences], dtype=torch.long)
    for i, (tokens, labels) in enumerate(sentences):
        words[i, :len(tokens)] = torch.tensor(encoder.words(tokens))
        where = f"{folder / 'labels.txt'}:{i + 1}"
        tags[i, :len(tokens)] = torch.tensor(encoder.tags(labels, where))
    return TokenData(words, tags, lengths)
