"""Class probabilities for image files or folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchstarter.config import Params
from torchstarter.errors import UserError
from torchstarter.tasks.signs.images import IMAGE_SUFFIXES, open_rgb, resize, to_chw_uint8


def expand_inputs(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"{path}: no .jpg/.jpeg/.png images in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    if not files:
        raise UserError("predict: give at least one image file or folder")
    return files


@torch.inference_mode()
def predict(model: torch.nn.Module, params: Params, inputs: list[str], device: torch.device
            ) -> list[dict[str, Any]]:
    files = expand_inputs(inputs)
    images = np.stack([to_chw_uint8(resize(open_rgb(f))) for f in files])
    model.eval()
    rows = []
    for start in range(0, len(files), params.batch_size):
        batch = torch.from_numpy(images[start:start + params.batch_size]).to(device)
        probs = torch.softmax(model(batch).float(), dim=1).cpu()
        for path, p in zip(files[start:start + params.batch_size], probs, strict=True):
            rows.append({"file": str(path), "label": int(p.argmax()),
                         "probabilities": {str(c): round(float(v), 4) for c, v in enumerate(p)}})
    return rows
