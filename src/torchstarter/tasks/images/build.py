"""build-dataset for the images task: any layout -> square images in train/val/test.

Output: OUT/{train,val,test}/<n>.png (image_size x image_size RGB, lossless), one
OUT/{split}.csv per split (file, label, source), and OUT/build_report.json with the
classes, the per-channel mean and std of train (the network normalises with them), the
counts per split and class, and every exact duplicate. Everything is read, checked and
decoded before anything is written; the output appears in one rename.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from torchstarter.errors import UserError
from torchstarter.tasks.images.layouts import SPLITS, Found, Item, discover
from torchstarter.tasks.vision.decode import FITS, fit, open_rgb, pixel_hash
from torchstarter.tasks.vision.duplicates import duplicate_lines, find_duplicates
from torchstarter.utils.atomic import write_json
from torchstarter.utils.folders import check_apart, replace_folder

REPORT = "build_report.json"
MIN_SIZE, MAX_SIZE = 8, 1024  # the network halves the side three times


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-size", "--image_size", type=int, default=64,
                        help="side of the square images written (default 64)")
    parser.add_argument("--fit", choices=FITS, default="crop",
                        help="how a non-square image becomes square, keeping its aspect: "
                             "crop (default: scale the short side, cut the middle) or pad "
                             "(scale the long side, fill with black)")
    parser.add_argument("--val-fraction", "--val_fraction", type=float, default=0.15,
                        help="share of each class held out for val when the data has no val "
                             "split (default 0.15)")
    parser.add_argument("--test-fraction", "--test_fraction", type=float, default=0.15,
                        help="share of each class held out for test when the data has no "
                             "test split (default 0.15)")
    parser.add_argument("--resplit", action="store_true",
                        help="pool the given splits and carve train/val/test anew with the "
                             "seed (by default given splits are kept)")
    parser.add_argument("--drop-leaks", "--drop_leaks", action="store_true",
                        help="leave out val/test images whose pixels equal a training image's")


def class_order(labels: set[str]) -> list[str]:
    """Numeric names in numeric order (2 before 10), others alphabetically."""
    if all(label.isascii() and label.isdigit() for label in labels):
        return sorted(labels, key=lambda label: (int(label), label))  # "1" and "01" both
    return sorted(labels)


def carve(items: list[Item], fractions: dict[str, float], seed: int
          ) -> dict[str, list[Item]]:
    """Hold out each fraction of every class (shuffled with `seed` and the class name; at
    least one image while train keeps one), the rest is train: each class keeps its share
    in every split, and the same seed gives the same cut."""
    parts: dict[str, list[Item]] = {"train": [], **{s: [] for s in fractions}}
    by_class: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_class[item.label].append(item)
    for label in sorted(by_class):
        group = sorted(by_class[label], key=lambda it: it.source)
        # A shuffle of each class's own (seeded by seed and name: a str seed is hashed with
        # SHA-512, the same in every process), so adding a class moves no other class.
        random.Random(f"{seed}/{label}").shuffle(group)
        start = 0
        for split, share in fractions.items():
            # at least one of a class in each held-out split, while train keeps one
            n = min(max(round(len(group) * share), 1), len(group) - start - 1)
            parts[split] += group[start:start + max(n, 0)]
            start += max(n, 0)
        parts["train"] += group[start:]
    return {s: sorted(p, key=lambda it: it.source) for s, p in parts.items()}


def plan_splits(found: Found, args: argparse.Namespace
                ) -> tuple[dict[str, list[Item]], str, str]:
    """Train/val/test items, how they came to be as a code for build_report.json (the
    NER task's codes: kept, val_carved_from_train, split_by_fractions, resplit; also
    test_carved_from_train and val_test_carved_from_train), and the same in words."""
    for name in ("val_fraction", "test_fraction"):
        value = getattr(args, name)
        if not 0 < value < 1:
            raise UserError(f"--{name.replace('_', '-')} {value}: must lie strictly between "
                            f"0 and 1")
    if args.val_fraction + args.test_fraction >= 1:
        raise UserError(f"--val-fraction {args.val_fraction} plus --test-fraction "
                        f"{args.test_fraction} leave nothing for train; make their sum below 1")
    given, seed = found.items, args.seed
    fractions = {"val": args.val_fraction, "test": args.test_fraction}
    if args.resplit or "all" in given:
        pooled = [item for split in ("all", *SPLITS) for item in given.get(split, [])]
        code = "resplit" if "all" not in given else "split_by_fractions"
        words = ("--resplit: the given splits pooled and " if code == "resplit" else "") + \
            (f"val {args.val_fraction} and test {args.test_fraction} of each class carved "
             f"with seed {seed}")
        return carve(pooled, fractions, seed), code, words
    missing = {s: share for s, share in fractions.items() if s not in given}
    if not missing:
        return {s: given[s] for s in SPLITS}, "kept", "kept as given, image for image"
    parts = carve(given["train"], missing, seed)
    kept = {s: given[s] for s in SPLITS if s in given and s != "train"}
    code = "_".join(missing) + "_carved_from_train"
    words = (f"kept as given; {' and '.join(missing)} carved from train "
             f"({', '.join(f'{share}' for share in missing.values())} of each class, "
             f"seed {seed})")
    return {**kept, **parts}, code, words


def check_classes(splits: dict[str, list[Item]], found: Found, where: Path) -> list[str]:
    """The class names, refused in one line when training could not learn them."""
    train = {item.label for item in splits["train"]}
    if len(train) < 2:
        only = f"only class {next(iter(train))!r}" if train else "no images"
        raise UserError(f"{where}: train has {only}; a classifier needs at least two classes")
    for split in ("val", "test"):
        unseen = sorted({item.label for item in splits[split]} - train)
        if unseen:
            source = found.split_sources.get(split, split)
            raise UserError(f"{where}: class {unseen[0]!r} of {split} ({source}) has no "
                            f"training images; add some to train or remove it from {split}")
        if not splits[split]:
            raise UserError(f"{where}: the {split} split is empty (too few images per class "
                            f"for --{split}-fraction); add images or raise the fraction")
    return class_order(train)


def channel_stats(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of pixel values in 0..1, one image at a time (a float
    copy of the whole split would take 8 bytes a pixel)."""
    total, squares, count = np.zeros(3), np.zeros(3), 0
    for image in images:
        values = image.reshape(-1, 3).astype(np.float64) / 255.0
        total += values.sum(axis=0)
        squares += np.square(values).sum(axis=0)
        count += len(values)
    mean = total / count
    return mean, np.maximum(np.sqrt(np.maximum(squares / count - mean ** 2, 0)), 1e-3)


def build_dataset(args: argparse.Namespace) -> dict[str, Any]:
    raw, out = Path(args.data_dir), Path(args.output_dir)
    if not MIN_SIZE <= args.image_size <= MAX_SIZE:
        raise UserError(f"--image-size {args.image_size}: must lie in {MIN_SIZE}..{MAX_SIZE}")
    found = discover(raw)
    root = raw.parent if raw.is_file() else raw
    check_apart(out, root, "the raw data in --data-dir", may_lie_inside=raw.is_file())
    splits, how, how_words = plan_splits(found, args)
    classes = check_classes(splits, found, raw)

    # Decode each picture once: checks it, gives its pixel hash, and its fitted pixels.
    # Only the small version is kept in memory (a 10k-image set at 64 px is 123 MB).
    pixels: dict[str, list[np.ndarray]] = {}
    hashes: dict[str, dict[str, str]] = {}
    modes: Counter[str] = Counter()
    for split in SPLITS:
        pixels[split], hashes[split] = [], {}
        for item in splits[split]:
            img = open_rgb(item.path, modes)
            hashes[split][item.source] = pixel_hash(img)
            pixels[split].append(np.asarray(fit(img, args.image_size, args.fit),
                                            dtype=np.uint8))
    duplicates = find_duplicates(hashes)
    dropped = {s: set(duplicates["leaks"][s]) if args.drop_leaks else set()
               for s in ("val", "test")}
    for split, names in dropped.items():
        if names and len(names) == len(splits[split]):
            raise UserError(f"{raw}: every {split} image equals a train image, so --drop-leaks "
                            f"would leave {split} empty; remove the copies from the data, or "
                            f"build without --drop-leaks")
    mean, std = channel_stats(pixels["train"])

    def write(tmp: Path) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        for split in SPLITS:
            (tmp / split).mkdir(parents=True)
            per_class: Counter[str] = Counter()
            with open(tmp / f"{split}.csv", "w", encoding="utf-8", newline="") as fh:
                table = csv.writer(fh)
                table.writerow(["file", "label", "source"])
                for i, (item, image) in enumerate(zip(splits[split], pixels[split],
                                                      strict=True)):
                    if item.source in dropped.get(split, ()):
                        continue
                    name = f"{split}/{i:06d}.png"
                    Image.fromarray(image).save(tmp / name, compress_level=1)
                    table.writerow([name, item.label, item.source])
                    per_class[item.label] += 1
            counts[split] = {"images": sum(per_class.values()),
                             "per_class": {c: per_class[c] for c in classes}}
        report = {"task": "images", "layout": found.layout, "source": str(raw.resolve()),
                  "splits_from": how, "splits_note": how_words,
                  "split_folders": found.split_sources,
                  "seed": args.seed, "image_size": args.image_size, "fit": args.fit,
                  "classes": classes,
                  "normalisation": {"mean": [round(float(v), 6) for v in mean],
                                    "std": [round(float(v), 6) for v in std],
                                    "from": "train"},
                  "color_modes": dict(sorted(modes.items())), "drop_leaks": args.drop_leaks,
                  "splits": counts, "duplicates": duplicates}
        write_json(tmp / REPORT, report)
        return report

    report = replace_folder(out, write, overwrite=args.overwrite, mark=REPORT)
    report["output"] = str(out)
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    classes = report["classes"]
    shown = ", ".join(classes[:10]) + (f", ... ({len(classes)} in all)"
                                       if len(classes) > 10 else "")
    lines = [f"layout: {report['layout']} ({report['source']})",
             f"splits: {report['splits_note']}",
             f"classes: {shown}",
             f"images: {report['image_size']}x{report['image_size']} ({report['fit']} to "
             f"square); color modes read: "
             + ", ".join(f"{m} {n}" for m, n in report["color_modes"].items())]
    for split in SPLITS:
        count = report["splits"][split]
        sources = report["split_folders"].get(split)
        lines.append(f"{split:5s}: {count['images']:6d} images"
                     + (f" (from {sources})" if sources else ""))
    lines += duplicate_lines(report["duplicates"], report["drop_leaks"])
    norm = report["normalisation"]
    lines.append("train mean / std per channel (the network normalises with them): "
                 + " ".join(f"{m:.3f}/{s:.3f}" for m, s in zip(norm["mean"], norm["std"],
                                                                strict=True)))
    lines.append(f"wrote {report['output']}")
    return lines
