"""Reading image files of any format, size and color mode, with clear errors.

Every image task (SIGNS and the general `images` task) lists images with `list_images`
(or `is_image_name`) and decodes them with `open_rgb`, so build-dataset, training and
predict accept the same files and turn them into the same pixels.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from torchstarter.errors import UserError

# The formats Pillow decodes well. The first three are what SIGNS ships and what the
# error messages name first; matching ignores case (IMG_1.JPG is an image).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SUFFIX_LIST = "/".join(IMAGE_SUFFIXES)
NO_IMAGES = (f"no {'/'.join(IMAGE_SUFFIXES[:3])} images in this folder "
             f"(nor {'/'.join(IMAGE_SUFFIXES[3:])})")

# Raw SIGNS photos are about 9 megapixels (3024x3024); a picture above 50 megapixels is
# a mistake or a decompression bomb, and decoding it would take gigabytes of memory.
MAX_PIXELS = 50_000_000



def is_image_name(path: Path) -> bool:
    """Whether the name ends in an accepted image suffix, in any case: one rule for every
    command, so predict takes exactly the files build-dataset and train take."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path, hint: str) -> list[Path]:
    """Image files of a folder, sorted by name so every run sees the same order.

    `hint` tells what the folder should be, since raw and built data differ. Entries that
    are not regular files (subfolders, broken or looping links) are left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found; {hint}")
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise UserError(f"{folder}: cannot list the folder ({exc.strerror}); {hint}") from None
    files = sorted(p for p in entries if is_image_name(p) and p.is_file())
    if not files:
        raise UserError(f"{folder}: {NO_IMAGES}; {hint}")
    return files


def pixel_limit() -> int:
    """The most pixels an image may have: ours, or Pillow's own limit if someone set it
    lower (Pillow would otherwise warn or refuse in its own words)."""
    pillow = Image.MAX_IMAGE_PIXELS
    return MAX_PIXELS if pillow is None else min(MAX_PIXELS, int(pillow))


def _too_large(path: Path, pixels: int | None, size: tuple[int, int] | None = None,
               limit: int | None = None) -> UserError:
    limit = pixel_limit() if limit is None else limit
    what = f"{size[0]}x{size[1]} = {pixels:,} pixels" if size and pixels else (
        f"{pixels:,} pixels" if pixels else "too many pixels")
    return UserError(f"{path}: image is too large ({what}, the limit is {limit:,}); resize "
                     f"it below {limit:,} pixels or remove it")


def open_rgb(path: Path, modes: Counter[str] | None = None, data: bytes | None = None,
             max_pixels: int | None = None) -> Image.Image:
    """Decode an image upright (EXIF orientation applied) as 8-bit RGB (see `to_rgb`).

    `data`, when given, holds the file's bytes (an upload to `serve`) and `path` only
    names it in messages, so an upload meets the same checks as a file; `max_pixels`
    lowers the limit (serve's budget per request).

    An image above `pixel_limit()` is refused from its header, before decoding, in one
    line; Pillow's DecompressionBombWarning becomes that same refusal instead of a
    printed warning, and its other warnings (about metadata such as a damaged EXIF
    block) are not shown: the pixels are what counts. The warning filters are changed
    only while the file is decoded (not thread-safe, like all of `warnings`). `modes`,
    when given, counts the color mode each file was stored in.
    """
    path = Path(path)
    try:
        if (len(data) if data is not None else path.stat().st_size) == 0:
            raise UserError(f"{path}: empty file, not an image; remove or replace the file")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
            warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
            with Image.open(path if data is None else io.BytesIO(data)) as img:
                width, height = img.size
                limit = pixel_limit() if max_pixels is None else min(pixel_limit(), max_pixels)
                if width * height > limit:
                    raise _too_large(path, width * height, img.size, limit)
                img.load()
                if modes is not None:
                    modes[img.mode] += 1
                return to_rgb(_upright(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(path, int(found.group(1)) if found else None) from None
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error,
            EOFError, NotImplementedError, TypeError, KeyError, IndexError,
            ZeroDivisionError, RuntimeError) as exc:  # what Pillow raises on damaged files
        raise UserError(f"{path}: not a readable image ({exc.__class__.__name__}); remove or "
                        f"replace the file") from None


def _upright(img: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; as stored if the EXIF is unreadable
    (a damaged metadata block should not cost the picture)."""
    try:
        return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, struct.error, KeyError, TypeError, IndexError):
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB with the brightness the picture shows, whatever the file's color mode.

    Pillow's own convert("RGB") clips 16-bit grayscale to white, so deep images are
    scaled here: "I;16*" and "I" (which is how Pillow opens 16-bit PNG and TIFF) map
    0..65535 to 0..255 (value / 257, rounded; "I" values outside 0..65535 are clipped);
    "F" maps 0..1 to 0..255 when its values lie in 0..1, else it is taken as 0..255 and
    clipped. Transparent images ("RGBA", "LA", "PA", "P" or "L" with a transparent
    color) are composited on white, as a viewer shows them, rather than having the
    alpha dropped, which would reveal whatever color hides under transparent pixels
    (often black). "1", "L", "P", "CMYK" and "YCbCr" convert directly. Other modes
    raise ValueError.
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(img).astype(np.float32)  # exact enough: see the test
        if mode == "F":
            values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
            if values.size and values.min() >= 0 and values.max() <= 1:
                values = values * 255
        else:
            values = values / 257
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def resize(img: Image.Image, size: int) -> Image.Image:
    """size x size with Lanczos filtering, stretching a non-square image (the SIGNS
    tutorial's rule); an image already that size is returned as is."""
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.LANCZOS)


FITS = ("crop", "pad")


def fit(img: Image.Image, size: int, how: str = "crop") -> Image.Image:
    """size x size keeping the aspect ratio: "crop" scales the shorter side to `size` and
    cuts the middle out of the longer one; "pad" scales the longer side to `size` and
    centres the picture on black. Square images are plain resizes either way."""
    width, height = img.size
    if (width, height) == (size, size):
        return img
    if width == height:
        return img.resize((size, size), Image.Resampling.LANCZOS)
    if how == "crop":  # cut the square in the source first: a 1 x 10^7 strip stays cheap
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return img.resize((size, size), Image.Resampling.LANCZOS,
                          box=(left, top, left + side, top + side))
    scale = size / max(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    scaled = img.resize(new, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(scaled, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


def pixel_hash(img: Image.Image) -> str:
    """Equal for images with equal pixels, whatever their files: finds exact duplicates."""
    return hashlib.sha1(img.tobytes() + repr(img.size).encode()).hexdigest()


def to_chw_uint8(img: Image.Image) -> np.ndarray:
    """An RGB image as a [3, H, W] uint8 array, the layout the network takes."""
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
