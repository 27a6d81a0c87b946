"""Per-entity-type precision, recall, F1 and support for `torchstarter evaluate`."""

from __future__ import annotations

from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.batching import iterate_batches
from torchstarter.engine.task import DataInfo
from torchstarter.tasks.ner.data import TokenData
from torchstarter.tasks.ner.entities import per_type_report


@torch.inference_mode()
def evaluation_report(model: torch.nn.Module, params: Params, data: TokenData,
                      device: torch.device, data_info: DataInfo) -> dict[str, Any]:
    tags = data_info["tags"]
    data = data.to(device)
    model.eval()
    gold_seqs: list[list[str]] = []
    pred_seqs: list[list[str]] = []
    order = torch.arange(len(data))
    for inputs, labels in iterate_batches(data, order, params.batch_size, device):
        predicted = model(inputs).predictions().cpu()
        for gold, pred, n in zip(labels.cpu(), predicted, inputs["lengths"].cpu(), strict=True):
            gold_seqs.append([tags[int(k)] for k in gold[:n]])
            pred_seqs.append([tags[int(k)] for k in pred[:n]])
    return {"per_type": per_type_report(gold_seqs, pred_seqs)}
