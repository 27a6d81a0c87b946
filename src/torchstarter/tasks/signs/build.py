"""build-dataset for SIGNS: resize, split raw train 80/20 with a seed, find duplicates.

Input: RAW/train_signs and RAW/test_signs. Output: OUT/{train,val,test}_signs with
64x64 images (files already 64x64 are copied byte for byte, not re-encoded) and
OUT/build_report.json describing the split and every exact duplicate.
"""

from __future__ import annotations

import argparse
import random
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from torchstarter.errors import UserError
from torchstarter.tasks.signs.images import (
    IMAGE_SIZE,
    label_from_name,
    list_images,
    open_rgb,
    resize,
)
from torchstarter.tasks.vision.decode import pixel_hash
from torchstarter.tasks.vision.duplicates import duplicate_lines, find_duplicates
from torchstarter.utils.atomic import write_json
from torchstarter.utils.folders import check_apart, replace_folder

SPLITS = ("train", "val", "test")
RAW_HINT = ("--data-dir must hold the raw SIGNS folders train_signs/ and test_signs/ with "
            "files named <label>_IMG_<id>.jpg")


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--val-fraction", "--val_fraction", type=float, default=0.2,
                        help="share of raw train_signs held out for validation (default 0.2)")
    parser.add_argument("--num-classes", "--num_classes", type=int, default=6,
                        help="labels must lie in 0..num_classes-1 (default 6)")
    parser.add_argument("--drop-leaks", "--drop_leaks", action="store_true",
                        help="leave out val/test images whose pixels equal a training image's")


def plan_split(files: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Sort, shuffle with `seed`, hold out the first val_fraction: reproducible anywhere."""
    shuffled = sorted(files)
    random.Random(seed).shuffle(shuffled)
    n_val = round(len(shuffled) * val_fraction)
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


def build_dataset(args: argparse.Namespace) -> dict[str, Any]:
    raw, out = Path(args.data_dir), Path(args.output_dir)
    if raw.is_file():
        raise UserError(f"--data-dir {raw} is a file; SIGNS raw data is a folder with "
                        f"train_signs/ and test_signs/ (for an NER corpus add --task ner)")
    if not raw.is_dir():
        raise UserError(f"{raw}: data folder not found; {RAW_HINT}")
    check_apart(out, raw, "the raw data in --data-dir", may_lie_inside=True)
    for images in (raw / "train_signs", raw / "test_signs"):
        check_apart(out, images, "the raw images in")
    if not 0 < args.val_fraction < 1:
        raise UserError(f"--val-fraction {args.val_fraction}: must lie strictly between 0 and 1")
    train_files = list_images(raw / "train_signs", RAW_HINT)
    test_files = list_images(raw / "test_signs", RAW_HINT)
    train, val = plan_split(train_files, args.val_fraction, args.seed)
    sources = {"train": train, "val": val, "test": test_files}

    # Decode every image once: validates it, gives its pixel hash and, if needed, its resize.
    # Only the 64x64 version is kept: the original release is 3024x3024 per image.
    decoded: dict[str, list[tuple[Path, int, Any]]] = {}
    hashes: dict[str, dict[str, str]] = {}
    for split, files in sources.items():
        decoded[split], hashes[split] = [], {}
        for path in files:
            label = label_from_name(path, args.num_classes, "pass --num-classes")
            img = open_rgb(path)
            hashes[split][path.name] = pixel_hash(img)
            keep_file = img.size == (IMAGE_SIZE, IMAGE_SIZE)
            decoded[split].append((path, label, None if keep_file else resize(img)))
    duplicates = find_duplicates(hashes)
    dropped = {s: set(duplicates["leaks"][s]) if args.drop_leaks else set()
               for s in ("val", "test")}

    def write(tmp: Path) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        for split in SPLITS:
            folder = tmp / f"{split}_signs"
            folder.mkdir(parents=True)
            per_class: dict[int, int] = defaultdict(int)
            resized = 0
            for path, label, img in decoded[split]:
                if path.name in dropped.get(split, ()):
                    continue
                target = folder / path.name
                if img is None:
                    shutil.copyfile(path, target)  # already the right size: no re-encoding
                else:
                    # same name and format as the source (a GIF goes back to 256 colors)
                    img.save(target, quality=95)
                    resized += 1
                per_class[label] += 1
            counts[split] = {"images": sum(per_class.values()), "resized": resized,
                             "per_class": {str(k): per_class[k] for k in sorted(per_class)}}
        report = {"source": str(raw.resolve()), "output": str(out), "seed": args.seed,
                  "val_fraction": args.val_fraction, "drop_leaks": args.drop_leaks,
                  "splits": counts, "duplicates": duplicates}
        write_json(tmp / "build_report.json", report)
        return report

    return replace_folder(out, write, overwrite=args.overwrite, mark="build_report.json")


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for split in SPLITS:
        c = report["splits"][split]
        lines.append(f"{split:5s}: {c['images']:5d} images ({c['resized']} resized)")
    lines += duplicate_lines(report["duplicates"], report["drop_leaks"])
    lines.append(f"wrote {report['output']}")
    return lines
