"""Reading a built split into memory, and augmenting training batches.

Edit this file for data in another layout. load_split returns a TensorData (inputs[i]
and labels[i] form example i); the engine batches it, shuffles it with a generator
drawn from (seed, epoch), and calls augment on training batches only.
"""

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
    """Decode every image of DATA_DIR/{split}_signs once into a uint8 tensor [N, 3, 64, 64].

    `split` is "train", "val" or "test"; the label is the number that starts the file name
    (3_IMG_42.jpg has label 3).
    """
    files = list_images(Path(data_dir) / f"{split}_signs")
    images = np.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    labels = np.empty(len(files), dtype=np.int64)
    for i, path in enumerate(files):
        labels[i] = label_from_name(path, params.num_classes)
        img = open_rgb(path)
        if img.size != (IMAGE_SIZE, IMAGE_SIZE):
            # A mistake the user can fix: a UserError prints one line, no traceback.
            raise UserError(f"{path}: image is {img.size[0]}x{img.size[1]}, expected "
                            f"{IMAGE_SIZE}x{IMAGE_SIZE}; run torchstarter build-dataset on the "
                            f"raw data and train on its output")
        images[i] = to_chw_uint8(img)
    return TensorData(torch.from_numpy(images), torch.from_numpy(labels))


def augment(params: Params, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip half the batch left-right. Draw randomness from `generator` only: runs repeat."""
    if not params.augmentation:
        return images
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
