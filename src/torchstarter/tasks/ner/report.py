"""What `torchstarter evaluate` adds for NER: per-entity-type scores, and scores on
entities made only of out-of-vocabulary words.

oov_entities: a token is OOV when no vocabulary word equals it lowercased, i.e. it reads
as UNK whether or not the words are looked up lowercased (Encoder.unknown), so the numbers
of cased and lowercased runs on one data folder count the same entities. An entity is
OOV when every one of its tokens is. Precision = matched OOV predicted entities / OOV
predicted entities; recall = matched OOV gold entities / OOV gold entities (a match is the
same type, start and end, as in the CoNLL score, and a matched pair covers the same
tokens, so it is OOV on both sides or on neither). `support` counts the OOV gold entities,
`predicted` the OOV predicted ones. partly_oov_entities: the same with entities holding at
least one OOV token (a larger set, so a less noisy number).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torchstarter.config import Params
from torchstarter.engine.batching import batch_groups, iterate_groups
from torchstarter.engine.examples import F1, RATIO, Examples
from torchstarter.engine.task import DataInfo
from torchstarter.tasks.ner.data import TokenData
from torchstarter.tasks.ner.entities import per_type_report, prf, spans


@torch.inference_mode()
def tag_sentences(model: torch.nn.Module, params: Params, data: TokenData,
                  device: torch.device, tags: list[str]
                  ) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tags of every sentence, in the split's order."""
    data = data.to(device)
    model.eval()
    gold_seqs: list[list[str]] = [[] for _ in range(len(data))]
    pred_seqs: list[list[str]] = [[] for _ in range(len(data))]
    # Batches may be grouped by length (bucket_by_length): the groups say which sentence
    # each row is.
    groups = batch_groups(data, torch.arange(len(data)), params.batch_size)
    order = iter(torch.cat(groups).tolist())
    for inputs, labels in iterate_groups(data, groups, device):
        predicted = model(inputs).predictions().cpu()
        for gold, pred, n in zip(labels.cpu(), predicted, inputs["lengths"].cpu(), strict=True):
            i = next(order)
            gold_seqs[i] = [tags[int(k)] for k in gold[:n]]
            pred_seqs[i] = [tags[int(k)] for k in pred[:n]]
    return gold_seqs, pred_seqs


def evaluation_report(model: torch.nn.Module, params: Params, data: TokenData,
                      device: torch.device, data_info: DataInfo) -> dict[str, Any]:
    oov = getattr(data, "oov", None)  # host tensor; absent from a TokenData built elsewhere
    gold_seqs, pred_seqs = tag_sentences(model, params, data, device, data_info["tags"])
    report: dict[str, Any] = {"per_type": per_type_report(gold_seqs, pred_seqs)}
    if oov is not None:
        flags = [row[:len(gold)] for row, gold in zip(oov.tolist(), gold_seqs, strict=True)]
        report["oov_entities"] = oov_entity_scores(gold_seqs, pred_seqs, flags)
        report["partly_oov_entities"] = oov_entity_scores(gold_seqs, pred_seqs, flags,
                                                          every=False)
    return report


def examples(model: torch.nn.Module, params: Params, data: TokenData, device: torch.device,
             data_info: DataInfo) -> Examples:
    """One row per sentence (words, gold and predicted tags); parts per sentence: tokens
    right and tokens for accuracy, entity counts for precision, recall and F1 (an entity
    matches with the same type, start and end, as in the CoNLL score)."""
    words = getattr(data, "tokens", None)
    gold_seqs, pred_seqs = tag_sentences(model, params, data, device, data_info["tags"])
    rows, counts = [], []
    for i, (gold, pred) in enumerate(zip(gold_seqs, pred_seqs, strict=True)):
        right = [g == p for g, p in zip(gold, pred, strict=True)]
        g, p = set(spans(gold)), set(spans(pred))
        tp = len(g & p)
        counts.append([sum(right), len(right), tp, len(p), len(g)])
        rows.append({"id": str(i), **({"words": words[i]} if words is not None else {}),
                     "true": gold, "predicted": pred, "token_errors": len(right) - sum(right),
                     "entity_errors": len(g ^ p)})
    c = np.asarray(counts, dtype=np.float64).reshape(-1, 5)
    tp, n_pred, n_gold = c[:, 2], c[:, 3], c[:, 4]
    parts = {"accuracy": (c[:, :2], RATIO),
             "precision": (np.stack([tp, n_pred], axis=1), RATIO),
             "recall": (np.stack([tp, n_gold], axis=1), RATIO),
             "f1": (np.stack([tp, n_pred - tp, n_gold - tp], axis=1), F1)}
    # Right or wrong per sentence (every tag), for McNemar's test: the tokens of a sentence
    # are not independent examples.
    correct = np.array([gold == pred for gold, pred in zip(gold_seqs, pred_seqs, strict=True)],
                       dtype=bool)
    return Examples(rows, parts, correct, unit="sentence", correct_unit="sentence")


def oov_entity_scores(gold: list[list[str]], pred: list[list[str]],
                      oov: list[list[bool]], every: bool = True) -> dict[str, float]:
    """Micro precision/recall/F1 over entities whose every token (or, with every=False,
    some token) is OOV; see the module for the definition."""
    rule = all if every else any
    tp = n_pred = n_gold = 0
    for gold_tags, pred_tags, flags in zip(gold, pred, oov, strict=True):
        def unknown(found: list[tuple[str, int, int]], flags: list[bool] = flags
                    ) -> set[tuple[str, int, int]]:
            return {(kind, a, b) for kind, a, b in found if rule(flags[a:b])}

        g, p = unknown(spans(gold_tags)), unknown(spans(pred_tags))
        tp += len(g & p)
        n_gold += len(g)
        n_pred += len(p)
    precision, recall, f1 = prf(tp, n_pred, n_gold)
    return {"precision": precision, "recall": recall, "f1": f1, "support": n_gold,
            "predicted": n_pred, "oov_tokens": sum(sum(f) for f in oov),
            "tokens": sum(len(f) for f in oov)}
