"""Class probabilities for image files or folders."""

from __future__ import annotations

import errno
import stat
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchstarter.config import Params
from torchstarter.errors import UserError
from torchstarter.tasks.signs.images import (
    SUFFIX_LIST,
    is_image_name,
    list_images,
    open_rgb,
    resize,
    to_chw_uint8,
)

PREDICT_HINT = "pass image files or folders of images"


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Image files from files and folders, with the suffixes build-dataset and train accept.

    A folder gives its images sorted by name (not its subfolders); a file must have an
    image suffix, so predict never takes a file the training data could not hold.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if _is_folder(path):
            files.extend(list_images(path, PREDICT_HINT))
        elif not is_image_name(path):
            raise UserError(f"{path}: not an image file name (accepted: {SUFFIX_LIST}, in "
                            f"any case); rename it, or {PREDICT_HINT}")
        else:
            files.append(path)
    if not files:
        raise UserError(f"predict: no input given; {PREDICT_HINT}")
    return files


def _is_folder(path: Path) -> bool:
    """True for a folder, False for a file; a path that cannot be followed is refused
    here in one line (missing, a broken or looping link, no permission)."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except FileNotFoundError:
        if path.is_symlink():
            raise UserError(f"{path}: broken symbolic link (what it points to is missing); "
                            f"fix the link, or {PREDICT_HINT}") from None
        raise UserError(f"{path}: no such file or folder; {PREDICT_HINT}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path}: symbolic link loop (following it never reaches a file); "
                            f"fix the link, or {PREDICT_HINT}") from None
        raise UserError(f"{path}: cannot be read ({exc.strerror}); {PREDICT_HINT}") from None


@torch.inference_mode()
def predict(model: torch.nn.Module, params: Params, inputs: list[str], device: torch.device
            ) -> list[dict[str, Any]]:
    """Class probabilities per image, decoded and resized the way build-dataset does it."""
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
