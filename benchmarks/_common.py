"""Helpers shared by the benchmarks: locating the real data and building it once."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from torchstarter.engine.memory_format import cpu_model
from torchstarter.tasks import load_task

REPO = Path(__file__).resolve().parents[1]
SHARED_SIGNS = REPO.parent / "shared" / "data" / "SIGNS"
SHARED_NER = REPO.parent / "shared" / "data" / "kaggle_ner" / "ner_dataset.csv.zip"


def refuse(message: str) -> NoReturn:
    """Bad input to a benchmark: one line, exit status 2, as the CLI does."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def build_ner(corpus: Path) -> Path:
    """Split the Kaggle corpus 70/15/15 (seed 230) and build the train vocabulary."""
    if not corpus.exists():
        refuse(f"{corpus}: no NER corpus here; pass its path")
    out = Path(tempfile.mkdtemp(prefix="ner-")) / "data"
    task = load_task("ner")
    task.build_dataset(task.build_options(corpus, out))
    task.build_vocab(task.vocab_options(out))
    return out


def build_signs(raw: Path, drop_leaks: bool = False) -> Path:
    """Build the 64x64 splits of raw SIGNS into a temp folder and return it."""
    if not (raw / "train_signs").is_dir():
        refuse(f"{raw}: no SIGNS data here (train_signs/ missing); pass its path")
    out = Path(tempfile.mkdtemp(prefix="signs64-")) / "data"
    task = load_task("signs")
    task.build_dataset(task.build_options(raw, out, drop_leaks=drop_leaks))
    return out


def machine_line() -> str:
    """What every speed figure is measured on: CPU model, cores, torch build, threads."""
    import torch

    return (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads by default")
