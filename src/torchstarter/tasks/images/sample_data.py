"""Built-in raw data for the images task: scikit-learn's bundled digits 0-5 as grayscale
PNG files in split and class folders (train/<name>/, test/<name>/; val is carved from
train), 60 train and 20 test pictures a class, so the demo, `new --from images` and the
tests read a real layout offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

NAMES = ("zero", "one", "two", "three", "four", "five")
TEST_PER_CLASS = 20
TRAIN_PER_CLASS = 60  # enough to learn the digits; small enough to build in a second


def write_sample_data(folder: Path) -> dict[str, int]:
    from sklearn.datasets import load_digits  # imported here: only the sample needs it

    digits = load_digits()
    counts = {"train": 0, "test": 0}
    for label, name in enumerate(NAMES):
        indices = np.flatnonzero(digits.target == label)[:TEST_PER_CLASS + TRAIN_PER_CLASS]
        for rank, index in enumerate(indices):
            split = "test" if rank < TEST_PER_CLASS else "train"
            target = Path(folder) / split / name
            target.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[index] * (255.0 / 16.0)).round().astype(np.uint8)
            img = Image.fromarray(pixels, mode="L").resize((32, 32), Image.Resampling.BICUBIC)
            img.save(target / f"{index:04d}.png")
            counts[split] += 1
    return counts
