"""A built split of the images task as one uint8 tensor, decoded once per run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from torchstarter.engine.batching import TensorData
from torchstarter.engine.task import DataInfo
from torchstarter.errors import UserError
from torchstarter.tasks.vision.decode import open_rgb, to_chw_uint8

BUILT_HINT = "run torchstarter build-dataset --task images and train on its output"


def read_rows(data_dir: Path, split: str) -> list[list[str]]:
    """The (file, label, source) rows of DATA/{split}.csv."""
    table = Path(data_dir) / f"{split}.csv"
    try:
        with open(table, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise UserError(f"{table}: missing; --data-dir must be a folder made by "
                        f"build-dataset --task images") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{table}: cannot be read ({type(exc).__name__}); {BUILT_HINT}"
                        ) from None
    if not rows or rows[0] != ["file", "label", "source"]:
        raise UserError(f"{table}:1: not the file,label,source table build-dataset writes; "
                        f"{BUILT_HINT}")
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != 3:
            raise UserError(f"{table}:{lineno}: {len(row)} columns, expected 3; {BUILT_HINT}")
    return rows[1:]


def load_split(data_dir: Path, split: str, data_info: DataInfo) -> TensorData:
    """Decode every image of the split into a uint8 tensor [N, 3, S, S] with its labels."""
    rows = read_rows(data_dir, split)
    size, ids = data_info["image_size"], {c: i for i, c in enumerate(data_info["classes"])}
    images = np.empty((len(rows), 3, size, size), dtype=np.uint8)
    labels = np.empty(len(rows), dtype=np.int64)
    root = Path(data_dir).resolve()
    for i, (file, label, _) in enumerate(rows):
        path = (root / file.replace("\0", "?")).resolve()  # a NUL byte: refused as missing
        if not path.is_relative_to(root):
            raise UserError(f"{Path(data_dir) / f'{split}.csv'}:{i + 2}: {file!r} points "
                            f"outside {root}; {BUILT_HINT}")
        if label not in ids:
            raise UserError(f"{Path(data_dir) / f'{split}.csv'}:{i + 2}: class {label!r} is "
                            f"not one the model was built for ({len(ids)} classes from "
                            f"build_report.json); {BUILT_HINT}")
        img = open_rgb(path)
        if img.size != (size, size):
            raise UserError(f"{path}: image is {img.size[0]}x{img.size[1]}, expected "
                            f"{size}x{size}; {BUILT_HINT}")
        images[i], labels[i] = to_chw_uint8(img), ids[label]
    data = TensorData(torch.from_numpy(images), torch.from_numpy(labels))
    data.ids = [source for _, _, source in rows]  # evaluate's rows name the source file
    return data
