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

import torch

from torchstarter.config import Params
from torchstarter.engine.batching import batch_groups, iterate_groups
from torchstarter.engine.task import DataInfo
from torchstarter.tasks.ner.data import TokenData
from torchstarter.tasks.ner.entities import per_type_report, prf, spans


@torch.inference_mode()
def evaluation_report(model: torch.nn.Module, params: Params, data: TokenData,
                      device: torch.device, data_info: DataInfo) -> dict[str, Any]:
    tags = data_info["tags"]
    oov = getattr(data, "oov", None)  # host tensor; absent from a TokenData built elsewhere
    data = data.to(device)
    model.eval()
    gold_seqs: list[list[str]] = []
    pred_seqs: list[list[str]] = []
    # Batches may be grouped by length (bucket_by_length): the groups say which sentence
    # each row is, so the OOV flags follow the sentences, not the order they came in.
    groups = batch_groups(data, torch.arange(len(data)), params.batch_size)
    for inputs, labels in iterate_groups(data, groups, device):
        predicted = model(inputs).predictions().cpu()
        for gold, pred, n in zip(labels.cpu(), predicted, inputs["lengths"].cpu(), strict=True):
            gold_seqs.append([tags[int(k)] for k in gold[:n]])
            pred_seqs.append([tags[int(k)] for k in pred[:n]])
    report: dict[str, Any] = {"per_type": per_type_report(gold_seqs, pred_seqs)}
    if oov is not None:
        rows = oov[torch.cat(groups).cpu()].tolist()
        flags = [row[:len(gold)] for row, gold in zip(rows, gold_seqs, strict=True)]
        report["oov_entities"] = oov_entity_scores(gold_seqs, pred_seqs, flags)
        report["partly_oov_entities"] = oov_entity_scores(gold_seqs, pred_seqs, flags,
                                                          every=False)
    return report


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
