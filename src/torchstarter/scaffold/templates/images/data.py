"""Reading a built split into memory, and augmenting training batches.

build-dataset wrote DATA/{split}/<n>.png (square RGB) and DATA/{split}.csv with the
columns file, label (a class name), source (the original file). load_split returns a
TensorData (inputs[i] and labels[i] form example i); the engine batches it, shuffles it
with a generator drawn from (seed, epoch), and calls augment on training batches only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from torchstarter.config import Params
from torchstarter.engine.batching import TensorData
from torchstarter.engine.task import DataInfo
from torchstarter.errors import UserError
from torchstarter.tasks.images.data import read_rows
from torchstarter.tasks.vision.decode import open_rgb, to_chw_uint8


def load_split(data_dir: Path, split: str, data_info: DataInfo) -> TensorData:
    """Every image of the split as a uint8 tensor [N, 3, S, S]; labels are class ids in
    the order of data_info["classes"]."""
    rows = read_rows(data_dir, split)
    size = data_info["image_size"]
    class_ids = {name: i for i, name in enumerate(data_info["classes"])}
    images = np.empty((len(rows), 3, size, size), dtype=np.uint8)
    labels = np.empty(len(rows), dtype=np.int64)
    root = Path(data_dir).resolve()
    for i, (file, label, _source) in enumerate(rows):
        where = f"{Path(data_dir) / f'{split}.csv'}:{i + 2}"
        path = (root / file.replace("\0", "?")).resolve()
        # Mistakes the user can fix: a UserError prints one line, no traceback.
        if not path.is_relative_to(root):
            raise UserError(f"{where}: {file!r} points outside {root}; rebuild the data")
        if label not in class_ids:
            raise UserError(f"{where}: class {label!r} is not one the model was built for; "
                            f"rebuild the data")
        img = open_rgb(path)
        if img.size != (size, size):
            raise UserError(f"{path}: image is {img.size[0]}x{img.size[1]}, expected "
                            f"{size}x{size}; rebuild the data")
        images[i] = to_chw_uint8(img)
        labels[i] = class_ids[label]
    data = TensorData(torch.from_numpy(images), torch.from_numpy(labels))
    data.ids = [source for _, _, source in rows]  # evaluate's rows name the original file
    return data


def augment(params: Params, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip half the batch left-right. Draw randomness from `generator` only: runs repeat."""
    if not params.augmentation:
        return images
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
