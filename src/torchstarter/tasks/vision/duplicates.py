"""Exact duplicates within a split, and copies of training images in val and test.

A test image equal to a training image measures memory, not generalisation; build-dataset
reports every such leak and leaves them out on request (--drop-leaks).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def find_duplicates(hashes: dict[str, dict[str, str]]) -> dict[str, Any]:
    """From {split: {name: pixel hash}}: groups of equal images within each split, and the
    val/test names whose pixels equal a train image (test also against val)."""
    report: dict[str, Any] = {"within": {}, "leaks": {}}
    for split, by_name in hashes.items():
        groups = defaultdict(list)
        for name, digest in by_name.items():
            groups[digest].append(name)
        report["within"][split] = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    train_hashes = set(hashes.get("train", {}).values())
    for split in ("val", "test"):
        report["leaks"][split] = sorted(
            name for name, digest in hashes.get(split, {}).items() if digest in train_hashes)
    val_hashes = set(hashes.get("val", {}).values())
    report["leaks"]["test_in_val"] = sorted(
        name for name, digest in hashes.get("test", {}).items() if digest in val_hashes)
    return report


def duplicate_lines(duplicates: dict[str, Any], drop_leaks: bool) -> list[str]:
    """What build-dataset prints about the duplicates it found."""
    within = {s: sum(len(g) - 1 for g in groups) for s, groups in duplicates["within"].items()}
    leak_val, leak_test = len(duplicates["leaks"]["val"]), len(duplicates["leaks"]["test"])
    lines = ["exact duplicates within a split (extra copies): "
             + ", ".join(f"{s} {n}" for s, n in within.items()),
             f"val images equal to a train image: {leak_val}; test images: {leak_test}; "
             f"test images equal to a val image: {len(duplicates['leaks']['test_in_val'])}"]
    if drop_leaks:
        lines.append(f"dropped {leak_val} val and {leak_test} test images (--drop-leaks)")
    elif leak_val or leak_test:
        lines.append("pass --drop-leaks to leave those val/test images out")
    return lines
