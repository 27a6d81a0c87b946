"""Class names and probabilities for image files or folders, as build-dataset sees them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torchstarter.config import Params
from torchstarter.engine.task import DataInfo
from torchstarter.tasks.signs.predict import expand_inputs
from torchstarter.tasks.vision.decode import fit, open_rgb, to_chw_uint8


@torch.inference_mode()
def predict(model: torch.nn.Module, params: Params, inputs: list[str], device: torch.device,
            data_info: DataInfo) -> list[dict[str, Any]]:
    files = expand_inputs(inputs)
    size, how, classes = data_info["image_size"], data_info["fit"], data_info["classes"]
    model.eval()
    rows = []
    for start in range(0, len(files), params.batch_size):
        chunk = files[start:start + params.batch_size]  # decode a batch at a time
        batch = np.stack([to_chw_uint8(fit(open_rgb(f), size, how)) for f in chunk])
        probs = torch.softmax(model(torch.from_numpy(batch).to(device)).float(), dim=1).cpu()
        for path, p in zip(chunk, probs, strict=True):
            rows.append({"file": str(path), "label": classes[int(p.argmax())],
                         "probabilities": {c: round(float(v), 4)
                                           for c, v in zip(classes, p, strict=True)}})
    return rows
