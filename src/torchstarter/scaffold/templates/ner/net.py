"""The tagger, its loss and its metrics. Edit this file to change the model.

The engine calls model(inputs) on each batch, then the task's loss (loss_fn here) and
every metric with (outputs, labels). Inputs are what data.py gives a batch:
{"words": word ids [batch, length], "lengths": real tokens per sentence}; labels are tag
ids [batch, length] with -1 on padding.

The built-in NER task (torchstarter/tasks/ner/net.py) adds a character CNN and a CRF
layer to this network; copy from it when you want them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchstarter.engine.task import Loss
from torchstarter.tasks.ner.entities import TagScheme
from torchstarter.tasks.ner.net import (  # noqa: F401 - the entity metrics, for __init__
    TaggerOutput,
    entity_f1,
    entity_precision,
    entity_recall,
)


class Tagger(nn.Module):
    """Embedding -> (Bi)LSTM -> linear: one score per tag for every token."""

    def __init__(self, vocab_size: int, tags: list[str], embedding_dim: int = 50,
                 hidden_dim: int = 50, bidirectional: bool = False, dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)  # 0 = <pad>
        self.dropout = nn.Dropout(dropout)
        self.bidirectional = bidirectional
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, batch_first=True,
                            bidirectional=bidirectional)
        self.fc = nn.Linear(hidden_dim * (2 if bidirectional else 1), len(tags))
        self.scheme = TagScheme(tags)  # which tag ids open and continue entities

    def forward(self, batch: dict[str, torch.Tensor]) -> TaggerOutput:
        words, lengths = batch["words"], batch["lengths"]
        mask = torch.arange(words.shape[1], device=words.device) < lengths[:, None]
        x = self.dropout(self.embedding(words))
        if self.bidirectional:
            # Packing makes the backward direction start at each sentence's last real token.
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                          enforce_sorted=False)
            h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True,
                                       total_length=words.shape[1])
        else:
            h, _ = self.lstm(x)  # left to right: the padding at the end never reaches a word
        scores = self.fc(self.dropout(h))
        # TaggerOutput carries the scores and the padding mask, and decodes the predicted
        # tags once per batch for every metric (crf=None: the best tag of each token).
        return TaggerOutput(scores, mask, None, self.scheme)


def loss_fn(outputs: TaggerOutput, labels: torch.Tensor) -> Loss:
    """Cross-entropy over real tokens only: padded positions carry -1 and are ignored.

    The count tells the engine the loss is a mean over that many tokens, so the epoch
    loss is weighted by tokens, not by sentences.
    """
    scores = outputs.emissions.float()
    loss = F.cross_entropy(scores.reshape(-1, scores.shape[-1]), labels.reshape(-1),
                           ignore_index=-1)
    return Loss(loss, outputs.mask.sum())


def token_accuracy(outputs: TaggerOutput, labels: torch.Tensor) -> tuple[Any, Any]:
    """(correct real tokens, real tokens). Flattering: most tokens are O."""
    return ((outputs.predictions() == labels) & outputs.mask).sum(), outputs.mask.sum()

