"""Loading a built SIGNS split into memory, and batch augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from torchstarter.config import Params
from torchstarter.engine.batching import TensorData
from torchstarter.errors import UserError
from torchstarter.tasks.signs.images import (
    IMAGE_SIZE,
    label_from_name,
    list_images,
    open_rgb,
    to_chw_uint8,
)


def load_split(params: Params, data_dir: Path, split: str) -> TensorData:
    """Decode every image of DATA/{split}_signs once into a uint8 tensor [N, 3, 64, 64]."""
    files = list_images(Path(data_dir) / f"{split}_signs")
    images = np.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    labels = np.empty(len(files), dtype=np.int64)
    for i, path in enumerate(files):
        labels[i] = label_from_name(path, params.num_classes)
        img = open_rgb(path)
        if img.size != (IMAGE_SIZE, IMAGE_SIZE):
            raise UserError(f"{path}: image is {img.size[0]}x{img.size[1]}, expected "
                            f"{IMAGE_SIZE}x{IMAGE_SIZE}; run torchstarter build-dataset on the "
                            f"raw data and train on its output")
        images[i] = to_chw_uint8(img)
    data = TensorData(torch.from_numpy(images), torch.from_numpy(labels))
    data.ids = [path.name for path in files]  # evaluate's per-example rows name the file
    return data


def augment(params: Params, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip of half the batch, on whatever device the batch is on."""
    if not params.augmentation:
        return images
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
