"""Built-in raw data in the SIGNS layout, made from scikit-learn's bundled digits.

The digits 0-5 (about 180 8x8 scans of each) are upscaled to 64x64 RGB and written as
RAW/train_signs and RAW/test_signs with SIGNS file names, so the demo and the tests
run the real pipeline on real images without downloading anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TEST_PER_CLASS = 20


def write_sample_data(folder: Path, num_classes: int = 6) -> dict[str, int]:
    from sklearn.datasets import load_digits  # imported here: only the demo needs it

    digits = load_digits()
    folder = Path(folder)
    counts = {"train": 0, "test": 0}
    for split in counts:
        (folder / f"{split}_signs").mkdir(parents=True, exist_ok=True)
    for label in range(num_classes):
        indices = np.flatnonzero(digits.target == label)
        for rank, index in enumerate(indices):
            split = "test" if rank < TEST_PER_CLASS else "train"
            pixels = (digits.images[index] * (255.0 / 16.0)).round().astype(np.uint8)
            img = Image.fromarray(pixels, mode="L").resize((64, 64), Image.Resampling.BICUBIC)
            img.convert("RGB").save(folder / f"{split}_signs" / f"{label}_IMG_{index}.jpg",
                                    quality=95)
            counts[split] += 1
    return counts
