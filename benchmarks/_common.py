"""Helpers shared by the benchmarks: locating the real data and building it once."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from torchstarter.tasks import load_task

REPO = Path(__file__).resolve().parents[1]
SHARED_SIGNS = REPO.parent / "shared" / "data" / "SIGNS"


def build_signs(raw: Path, drop_leaks: bool = False) -> Path:
    """Build the 64x64 splits of raw SIGNS into a temp folder and return it."""
    if not (raw / "train_signs").is_dir():
        sys.exit(f"{raw}: no SIGNS data here (train_signs/ missing); pass --raw PATH")
    out = Path(tempfile.mkdtemp(prefix="signs64-")) / "data"
    task = load_task("signs")
    task.build_dataset(task.build_options(raw, out, drop_leaks=drop_leaks))
    return out
