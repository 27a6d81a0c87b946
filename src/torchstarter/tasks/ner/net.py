"""The tagger: embedding (+ optional character CNN, case shape) -> (Bi)LSTM -> linear (-> CRF)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchstarter.engine.task import Loss, Metric
from torchstarter.tasks.ner.crf import CRF
from torchstarter.tasks.ner.entities import TagScheme, entity_counts


class TaggerOutput:
    """Tag scores of a batch plus what loss and metrics need; decoding happens once."""

    def __init__(self, emissions: torch.Tensor, mask: torch.Tensor, crf: CRF | None,
                 scheme: TagScheme):
        self.emissions, self.mask, self.crf, self.scheme = emissions, mask, crf, scheme
        self._predictions: torch.Tensor | None = None
        self._counts: tuple[torch.Tensor, torch.Tensor] | None = None  # (labels, counts)

    def predictions(self) -> torch.Tensor:
        """Tag ids [B, T]; Viterbi with a CRF, argmax without; -1 on padding."""
        if self._predictions is None:
            with torch.no_grad():
                if self.crf is not None:
                    self._predictions = self.crf.decode(self.emissions.float(), self.mask)
                else:
                    self._predictions = self.emissions.argmax(-1).masked_fill(~self.mask, -1)
        return self._predictions

    def entity_counts(self, labels: torch.Tensor) -> torch.Tensor:
        """(true positives, predicted entities, gold entities), computed once per batch:
        precision, recall and F1 each ask with the same labels tensor."""
        if self._counts is None or self._counts[0] is not labels:
            counts = entity_counts(self.predictions(), labels, self.mask,
                                   self.scheme.to(labels.device))
            self._counts = (labels, counts)  # holding labels: `is` cannot match another
        return self._counts[1]


class Tagger(nn.Module):
    def __init__(self, vocab_size: int, tags: list[str], embedding_dim: int = 50,
                 hidden_dim: int = 50, bidirectional: bool = False, num_layers: int = 1,
                 dropout: float = 0.0, num_chars: int = 0, char_embedding_dim: int = 0,
                 char_filters: int = 50, crf: bool = False, pad_id: int = 0,
                 num_cases: int = 0, case_embedding_dim: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        features = embedding_dim
        self.char_embedding: nn.Embedding | None = None
        if char_embedding_dim > 0:
            self.char_embedding = nn.Embedding(num_chars, char_embedding_dim, padding_idx=0)
            self.char_conv = nn.Conv1d(char_embedding_dim, char_filters, 3, padding=1)
            features += char_filters
        # Case shape of each token (data.case_shape), id 0 for padding: gives back what
        # lowercase_words drops. Absent (no weights) when off, so old checkpoints load.
        self.case_embedding: nn.Embedding | None = None
        if case_embedding_dim > 0:
            self.case_embedding = nn.Embedding(num_cases, case_embedding_dim, padding_idx=0)
            features += case_embedding_dim
        self.dropout = nn.Dropout(dropout)
        self.bidirectional = bidirectional
        self.lstm = nn.LSTM(features, hidden_dim, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.fc = nn.Linear(hidden_dim * (2 if bidirectional else 1), len(tags))
        self.crf = CRF(len(tags)) if crf else None
        self.scheme = TagScheme(tags)

    def _char_features(self, chars: torch.Tensor) -> torch.Tensor:
        b, t, w = chars.shape
        x = self.char_embedding(chars.reshape(b * t, w)).transpose(1, 2)  # [BT, E, W]
        x = F.relu(self.char_conv(x)).amax(dim=2)  # max over the characters of a word
        return x.reshape(b, t, -1)

    def forward(self, batch: dict[str, torch.Tensor]) -> TaggerOutput:
        words, lengths = batch["words"], batch["lengths"]
        mask = torch.arange(words.shape[1], device=words.device) < lengths[:, None]
        x = self.embedding(words)
        if self.char_embedding is not None:
            x = torch.cat([x, self._char_features(batch["chars"])], dim=-1)
        if self.case_embedding is not None:
            x = torch.cat([x, self.case_embedding(batch["cases"])], dim=-1)
        h = self._recurrent(self.dropout(x), batch.get("host_lengths", lengths))
        emissions = self.fc(self.dropout(h))
        return TaggerOutput(emissions, mask, self.crf, self.scheme)

    @torch.compiler.disable
    def _recurrent(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The LSTM, run eagerly (cuDNN) under torch.compile, which cannot trace RNNs.

        Kept apart so that compile still captures the layers before and after it. It runs
        in float32 with autocast off: under autocast, cuDNN's LSTM is cast to float16 even
        when bf16 was asked for, and nothing would scale its gradients.
        """
        with torch.autocast(x.device.type, enabled=False):
            return self._lstm(x.float(), lengths)

    def _lstm(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.bidirectional:
            return self.lstm(x)[0]  # left to right: trailing padding cannot reach real tokens
        # The backward direction must start at each sentence's last real token, so the
        # batch is packed. Packing needs the lengths on the host, sorted: batches from
        # TokenData bring them there ("host_lengths"), and the sort and its inverse go to
        # the device with non-blocking copies, so a GPU step never waits here.
        lengths = lengths.cpu()  # free for host lengths; a sync only for other callers
        order = torch.argsort(lengths, descending=True, stable=True)
        restore = torch.argsort(order)  # the inverse permutation
        packed = pack_padded_sequence(x.index_select(0, order.to(x.device, non_blocking=True)),
                                      lengths[order], batch_first=True)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True,
                                   total_length=x.shape[1])
        return h.index_select(0, restore.to(x.device, non_blocking=True))


def loss_fn(outputs: TaggerOutput, labels: torch.Tensor) -> Loss:
    """Mean loss per real token, and the number of real tokens it averages."""
    tokens = outputs.mask.sum()
    if outputs.crf is not None:
        nll = outputs.crf.nll(outputs.emissions, labels, outputs.mask)
        return Loss(nll.sum() / tokens, tokens)
    scores = outputs.emissions.float()
    loss = F.cross_entropy(scores.reshape(-1, scores.shape[-1]), labels.reshape(-1),
                           ignore_index=-1)
    return Loss(loss, tokens)


def weighted_loss_fn(weights: torch.Tensor) -> Callable[[TaggerOutput, torch.Tensor], Loss]:
    """Cross-entropy weighted by the gold tag: sum(w_y * nll) / sum(w_y) over real tokens,
    with count sum(w_y) (a device tensor), so the epoch's train loss is the exact weighted
    mean and gradient accumulation divides by the total weight. Per-token, so no CRF."""
    copies: dict[torch.device, torch.Tensor] = {weights.device: weights}

    def loss(outputs: TaggerOutput, labels: torch.Tensor) -> Loss:
        table = copies.get(labels.device)
        if table is None:  # moved once per device, not per step
            table = copies[labels.device] = weights.to(labels.device)
        scores = outputs.emissions.float()
        nll = F.cross_entropy(scores.reshape(-1, scores.shape[-1]), labels.reshape(-1),
                              ignore_index=-1, reduction="none")  # 0 on padding
        w = (table[labels.clamp(min=0)] * (labels >= 0)).reshape(-1)
        total = w.sum()
        return Loss((w * nll).sum() / total, total)

    return loss


def _token_accuracy(outputs: TaggerOutput, labels: torch.Tensor) -> tuple[Any, Any]:
    return ((outputs.predictions() == labels) & outputs.mask).sum(), outputs.mask.sum()


def _entity_precision(outputs: TaggerOutput, labels: torch.Tensor) -> tuple[Any, Any]:
    tp, n_pred, _ = outputs.entity_counts(labels)
    return tp, n_pred


def _entity_recall(outputs: TaggerOutput, labels: torch.Tensor) -> tuple[Any, Any]:
    tp, _, n_gold = outputs.entity_counts(labels)
    return tp, n_gold


def _entity_f1(outputs: TaggerOutput, labels: torch.Tensor) -> tuple[Any, Any]:
    """F1 = 2TP / (2TP + FP + FN) = 2TP / (predicted + gold): a ratio of sums, so exact."""
    tp, n_pred, n_gold = outputs.entity_counts(labels)
    return 2 * tp, n_pred + n_gold


token_accuracy = Metric(_token_accuracy)
# With no entity predicted (or expected) in a whole pass, these are 0, as seqeval says.
entity_precision = Metric(_entity_precision, if_empty=0.0)
entity_recall = Metric(_entity_recall, if_empty=0.0)
entity_f1 = Metric(_entity_f1, if_empty=0.0)
