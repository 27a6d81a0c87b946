"""Class probabilities for image files or folders."""

from __future__ import annotations

import errno
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.export_spec import ExportSpec
from torchstarter.errors import UserError
from torchstarter.tasks.signs.images import (
    IMAGE_SIZE,
    SUFFIX_LIST,
    is_image_name,
    list_images,
    open_rgb,
    resize,
    to_chw_uint8,
)
from torchstarter.tasks.vision.shipping import classifier_spec, classify, request_images

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


def predict(model: torch.nn.Module, params: Params, inputs: list[str], device: torch.device
            ) -> list[dict[str, Any]]:
    """Class probabilities per image, decoded and resized the way build-dataset does it."""
    files = expand_inputs(inputs)
    images = [to_chw_uint8(resize(open_rgb(f))) for f in files]
    return classify(model, images, [str(f) for f in files], list(range(params.num_classes)),
                    params.batch_size, device)


def predict_inputs(model: torch.nn.Module, params: Params, inputs: list[tuple[str, Any]],
                   device: torch.device) -> list[dict[str, Any]]:
    """predict's rows for images a request to `serve` brought (serve_inputs)."""
    return classify(model, [image for _, image in inputs], [name for name, _ in inputs],
                    list(range(params.num_classes)), params.batch_size, device)


def serve_inputs(body: Any, uploads: list[tuple[str, bytes]], limits: Mapping[str, int]
                 ) -> list[tuple[str, Any]]:
    return request_images(body, uploads, limits, resize)


def export_spec(model: torch.nn.Module, params: Params) -> ExportSpec:
    return classifier_spec(model, IMAGE_SIZE, list(range(params.num_classes)), {
        "decode": "any image file, turned upright by its EXIF orientation, as 8-bit RGB "
                  "(transparent pixels laid on white, 16-bit values divided by 257)",
        "resize": {"size": [IMAGE_SIZE, IMAGE_SIZE], "how": "stretch", "filter": "lanczos"},
        "scale": "none outside the graph: it divides by 255 itself"})
