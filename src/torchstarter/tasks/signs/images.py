"""SIGNS image files: labels from names and the 64x64 size; decoding is shared with every
image task (torchstarter.tasks.vision.decode) and re-exported here for the tutorial's
imports."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from torchstarter.errors import UserError
from torchstarter.tasks.vision import decode
from torchstarter.tasks.vision.decode import (  # noqa: F401 - the names SIGNS code imports
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    NO_IMAGES,
    SUFFIX_LIST,
    is_image_name,
    open_rgb,
    pixel_limit,
    to_chw_uint8,
    to_rgb,
)

IMAGE_SIZE = 64
BUILT_DATA_HINT = ("--data-dir must be a folder made by torchstarter build-dataset "
                   "(train_signs/, val_signs/, test_signs/)")
NUM_CLASSES_HINT = "raise num_classes in params.json"


def label_from_name(path: Path, num_classes: int, classes_hint: str = NUM_CLASSES_HINT) -> int:
    """The label is the whole numeric prefix before the first underscore: 12_IMG_3.jpg -> 12.

    `classes_hint` says where num_classes comes from, which differs between commands.
    """
    prefix = Path(path).name.split("_", 1)[0]
    if "_" not in Path(path).name or not (prefix.isascii() and prefix.isdigit()):
        raise UserError(f"{path}: file name does not start with a label "
                        f"('<label>_IMG_<id>.jpg'); rename or remove the file")
    label = int(prefix)
    if label >= num_classes:
        raise UserError(f"{path}: label {label} is outside 0..{num_classes - 1}; fix the file "
                        f"name or {classes_hint}")
    return label


def list_images(folder: Path, hint: str = BUILT_DATA_HINT) -> list[Path]:
    """The folder's image files sorted by name (decode.list_images), told as SIGNS data."""
    return decode.list_images(folder, hint)


def resize(img: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """SIGNS photos are square: stretched to 64x64 as the tutorial does."""
    return decode.resize(img, size)
