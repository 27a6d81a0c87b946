"""What a task hands `torchstarter export`: a module of tensors only, and how to check it.

The training model may take dicts, pack sequences or return rich objects; an exported
graph cannot. A task's `export_spec` hook wraps its model in a module whose inputs and
outputs are plain tensors, names them, says which of their dimensions vary, and tells
the export how to compare the artifact with the eager model on a validation batch.
Everything a caller needs to feed the artifact (sizes, vocabularies, label names) goes
in `metadata`, which export writes beside the artifact as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# Predictions equal to this value (padding of a sequence) are left out of the comparison.
IGNORE = -1


@dataclass
class ExportSpec:
    """The exportable form of a trained model.

    module     tensors in (in `inputs` order), (scores, predictions) out, in eval mode
    inputs     input name -> {dimension index: symbolic name} of the dimensions that vary
               (every input has a batch dimension 0)
    example    one input tensor per name, to trace with
    outputs    the two output names: scores (float, compared by max absolute difference)
               and predictions (integers, compared for identity; IGNORE entries skipped)
    feed       a validation batch's inputs -> {input name: tensor}
    reference  a validation batch's inputs -> (scores, predictions) of the eager model,
               the way evaluate and predict compute them (not through `module`)
    metadata   JSON-able facts a caller needs: preprocessing, label names, decoding
    """

    module: nn.Module
    inputs: dict[str, dict[int, str]]
    example: dict[str, torch.Tensor]
    outputs: tuple[str, str]
    feed: Callable[[Any], dict[str, torch.Tensor]]
    reference: Callable[[Any], tuple[torch.Tensor, torch.Tensor]]
    metadata: dict[str, Any] = field(default_factory=dict)
