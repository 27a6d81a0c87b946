"""Reading SIGNS image files: labels from names, decoding with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from torchstarter.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_SIZE = 64


BUILT_DATA_HINT = ("--data-dir must be a folder made by torchstarter build-dataset "
                   "(train_signs/, val_signs/, test_signs/)")
NUM_CLASSES_HINT = "raise num_classes in params.json"


def label_from_name(path: Path, num_classes: int, classes_hint: str = NUM_CLASSES_HINT) -> int:
    """The label is the whole numeric prefix before the first underscore: 12_IMG_3.jpg -> 12.

    `classes_hint` says where num_classes comes from, which differs between commands.
    """
    prefix = Path(path).name.split("_", 1)[0]
    if "_" not in Path(path).name or not prefix.isdigit():
        raise UserError(f"{path}: file name does not start with a label "
                        f"('<label>_IMG_<id>.jpg'); rename or remove the file")
    label = int(prefix)
    if label >= num_classes:
        raise UserError(f"{path}: label {label} is outside 0..{num_classes - 1}; fix the file "
                        f"name or {classes_hint}")
    return label


def list_images(folder: Path, hint: str = BUILT_DATA_HINT) -> list[Path]:
    """Image files of a folder, sorted by name so every run sees the same order.

    `hint` tells what the folder should be, since raw and built data differ.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found; {hint}")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no .jpg/.jpeg/.png images in this folder; {hint}")
    return files


def open_rgb(path: Path) -> Image.Image:
    """Decode an image upright (EXIF orientation applied) as RGB."""
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: not a readable image ({exc.__class__.__name__}); remove or "
                        f"replace the file") from None


def resize(img: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.LANCZOS)


def to_chw_uint8(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
