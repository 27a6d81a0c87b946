"""Helpers shared by the benchmarks: locating the real data and building it once."""

from __future__ import annotations

import argparse
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
    parser = argparse.ArgumentParser()
    task.add_build_arguments(parser)
    args = parser.parse_args(["--drop-leaks"] if drop_leaks else [])
    args.__dict__.update(data_dir=raw, output_dir=out, seed=230, overwrite=False)
    task.build_dataset(args)
    return out
