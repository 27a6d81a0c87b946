"""Every bad-input row of docs/errors.md, run through the CLI the way a user meets it.

Each case must end in exactly one stderr line `error: <file>[:line]: ...`, exit code 2,
no traceback, and leave what earlier commands wrote (a finished run, a built dataset, a
vocabulary) byte for byte and mtime for mtime as it was. The table and the cases are
checked against each other, so neither can change alone.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import test_disk_errors
import test_export
import test_hostile_inputs
import test_images_task
import test_ner_embeddings
import test_ner_kept_splits
import test_serve
import torch
from conftest import REPO, TINY
from hypothesis import given, settings
from hypothesis import strategies as st

from torchstarter.cli.main import main
from torchstarter.config import parse_overrides
from torchstarter.config.params import read_params_file
from torchstarter.engine.checkpoint import load_checkpoint, save_checkpoint
from torchstarter.errors import UserError
from torchstarter.experiment.lock import LOCK
from torchstarter.tasks.ner.corpus import read_corpus, read_split
from torchstarter.tasks.ner.vocab import Vocab
from torchstarter.tasks.signs.images import label_from_name

ERRORS_DOC = REPO / "docs" / "errors.md"
RUN_RECORD = "run.json"  # the run's own story; a failed attempt is meant to update it

# A two-blob task whose training inputs get a NaN when the data folder holds a file `nan`:
# the way a NaN loss usually arrives, from the data, in the middle of a run.
POISON_TASK = '''
"""Two blobs in 3 dimensions; a file named `nan` in the data folder poisons one input."""
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from torchstarter.engine.batching import TensorData

SCHEMA = {}
DEFAULT_METRIC = "accuracy"


def accuracy(logits, labels):
    return (logits.argmax(1) == labels).sum(), labels.numel()


METRICS = {"accuracy": accuracy}


def load_split(params, data_dir, split):
    gen = torch.Generator().manual_seed(len(split))
    labels = torch.randint(0, 2, (64,), generator=gen)
    inputs = torch.randn(64, 3, generator=gen) + 2.0 * labels[:, None].float()
    if split == "train" and (Path(data_dir) / "nan").exists():
        inputs[40, 0] = float("nan")
    return TensorData(inputs, labels)


def build_model(params):
    return nn.Linear(3, 2)


def loss_fn(logits, labels):
    return F.cross_entropy(logits, labels)
'''

NER_TINY = {"task": "ner", "learning_rate": 0.01, "batch_size": 8, "num_epochs": 1,
            "embedding_dim": 8, "lstm_hidden_dim": 8}


def cli(*args: object) -> None:
    """Run a step that must succeed (building the world)."""
    assert main([str(a) for a in args]) == 0, args


@dataclass
class World:
    """What earlier commands produced; built once, copied by every case that changes it."""

    signs_raw: Path
    signs_data: Path
    signs_run: Path
    ner_raw: Path
    ner_data: Path
    ner_run: Path
    poison_data: Path
    poison_run: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    w = World(*(root / name for name in ("signs_raw", "signs_data", "signs_run", "ner_raw",
                                         "ner_data", "ner_run", "poison_data", "poison_run")))
    cli("sample-data", "--task", "signs", "--output-dir", w.signs_raw)
    cli("build-dataset", "--data-dir", w.signs_raw, "--output-dir", w.signs_data)
    cli("sample-data", "--task", "ner", "--output-dir", w.ner_raw)
    cli("build-dataset", "--task", "ner", "--data-dir", w.ner_raw, "--output-dir", w.ner_data)
    cli("build-vocab", "--data-dir", w.ner_data)
    for run, params in ((w.signs_run, {**TINY, "num_epochs": 1}), (w.ner_run, NER_TINY),
                        (w.poison_run, {"task": "poison_task.py", "learning_rate": 0.1,
                                        "batch_size": 16, "num_epochs": 1})):
        run.mkdir()
        (run / "params.json").write_text(json.dumps(params))
    (w.poison_run / "poison_task.py").write_text(POISON_TASK)
    w.poison_data.mkdir()
    cli("train", "--data-dir", w.signs_data, "--model-dir", w.signs_run)
    cli("train", "--data-dir", w.ner_data, "--model-dir", w.ner_run)
    cli("train", "--data-dir", w.poison_data, "--model-dir", w.poison_run)
    return w


@dataclass
class Scenario:
    """A command that must fail, and what it must and must not do."""

    argv: list[object]
    names: str  # the file (and :line) the message must name
    says: str  # a fragment of the message; docs/errors.md shows it too
    keep: list[Path] = field(default_factory=list)  # files or folders that must not change


@dataclass(frozen=True)
class Case:
    row: str
    variant: str
    make: Callable[[World, Path], Scenario]

    @property
    def id(self) -> str:
        return f"{self.row}/{self.variant}"


CASES: list[Case] = []


def case(row: str, variant: str):
    def register(make: Callable[[World, Path], Scenario]) -> Callable[[World, Path], Scenario]:
        CASES.append(Case(row, variant, make))
        return make
    return register


# ------------------------------------------------------------------------- helpers

def copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)  # copy2: mtimes travel, so "unchanged" means unchanged
    return target


def set_params(model_dir: Path, **changes: object) -> None:
    params = json.loads((model_dir / "params.json").read_text())
    (model_dir / "params.json").write_text(json.dumps({**params, **changes}))


def nth(folder: Path, n: int = 0) -> Path:
    return sorted(folder.iterdir())[n]


def edit_line(path: Path, lineno: int, change: Callable[[str], str]) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[lineno - 1] = change(lines[lineno - 1])
    path.write_text("\n".join(lines), encoding="utf-8")


def train_over(run: Path, data: Path) -> list[object]:
    """A fresh train over a finished run: --overwrite would move its files if it got far."""
    return ["train", "--data-dir", data, "--model-dir", run, "--overwrite"]


def rebuild(raw: Path, out: Path, *flags: object) -> list[object]:
    """build-dataset over an existing output folder, which it may only replace on success."""
    return ["build-dataset", *flags, "--data-dir", raw, "--output-dir", out, "--overwrite"]


# ----------------------------------------------------------------------- params.json

@case("params-malformed-json", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    (run / "params.json").write_text('{"task": "signs",\n "learning_rate": 1e-3 "x": 1}')
    return Scenario(train_over(run, w.signs_data), f"{run / 'params.json'}:2:24",
                    "malformed JSON (Expecting ',' delimiter)", [run])


@case("params-duplicate-key", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    params = json.loads((run / "params.json").read_text())
    lines = json.dumps(params, indent=1).splitlines()
    lines.insert(1, '"learning_rate": 0.5,')  # line 2; the run's own comes second
    (run / "params.json").write_text("\n".join(lines))
    second = [i for i, line in enumerate(lines, 1) if '"learning_rate"' in line][1]
    return Scenario(train_over(run, w.signs_data), f"{run / 'params.json'}:{second}",
                    "key 'learning_rate' is given twice (JSON would silently keep the last); "
                    "keep one", [run])


@case("params-unknown-key", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    set_params(run, num_epoch=2)
    return Scenario(train_over(run, w.signs_data), str(run / "params.json"),
                    "unknown key 'num_epoch' (did you mean 'num_epochs'?)", [run])


@case("params-wrong-type", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    set_params(run, batch_size="32")
    return Scenario(train_over(run, w.signs_data), str(run / "params.json"),
                    "key 'batch_size': expected an integer, got '32'", [run])


@case("params-out-of-range", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    set_params(run, dropout_rate=1.5)
    return Scenario(train_over(run, w.signs_data), str(run / "params.json"),
                    "key 'dropout_rate': 1.5 is out of range (must be >= 0 and <= 1)", [run])


@case("params-missing", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    (run / "params.json").unlink()
    return Scenario(train_over(run, w.signs_data), str(run / "params.json"),
                    "params file not found", [run])


# ------------------------------------------------------------- built data for train

@case("data-folder-missing", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    return Scenario(train_over(run, tmp / "no_such_data"), str(tmp / "no_such_data"),
                    "data folder not found; check --data-dir", [run])


@case("data-folder-empty", "signs")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.signs_run, tmp / "run"), tmp / "data"
    data.mkdir()
    return Scenario(train_over(run, data), str(data / "train_signs"),
                    "folder not found; --data-dir must be a folder made by torchstarter "
                    "build-dataset", [run, data])


@case("data-folder-empty", "ner")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.ner_run, tmp / "run"), tmp / "data"
    data.mkdir()
    return Scenario(train_over(run, data), str(data / "words.txt"),
                    "missing; run torchstarter build-vocab", [run, data])


@case("split-missing", "signs")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.signs_run, tmp / "run"), copy(w.signs_data, tmp / "data")
    shutil.rmtree(data / "val_signs")
    return Scenario(train_over(run, data), str(data / "val_signs"), "folder not found",
                    [run, data])


@case("split-missing", "ner")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.ner_run, tmp / "run"), copy(w.ner_data, tmp / "data")
    shutil.rmtree(data / "val")
    return Scenario(train_over(run, data), str(data / "val"),
                    "no such folder; run torchstarter build-dataset", [run, data])


@case("split-empty", "signs")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.signs_run, tmp / "run"), copy(w.signs_data, tmp / "data")
    shutil.rmtree(data / "val_signs")
    (data / "val_signs").mkdir()
    return Scenario(train_over(run, data), str(data / "val_signs"),
                    "no .jpg/.jpeg/.png images in this folder", [run, data])


@case("split-empty", "ner")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.ner_run, tmp / "run"), copy(w.ner_data, tmp / "data")
    for name in ("sentences.txt", "labels.txt"):
        (data / "val" / name).write_text("")
    return Scenario(train_over(run, data), str(data / "val"), "empty split", [run, data])


# ----------------------------------------------------------------- raw data folders

@case("raw-folder-missing", "signs")
def _(w: World, tmp: Path) -> Scenario:
    out = copy(w.signs_data, tmp / "out")
    return Scenario(rebuild(tmp / "no_such_raw", out), str(tmp / "no_such_raw"),
                    "data folder not found; --data-dir must hold the raw SIGNS folders", [out])


@case("raw-folder-missing", "ner")
def _(w: World, tmp: Path) -> Scenario:
    out = copy(w.ner_data, tmp / "out")
    return Scenario(rebuild(tmp / "ner_dataset.csv", out, "--task", "ner"),
                    str(tmp / "ner_dataset.csv"), "no such file or folder", [out])


@case("raw-folder-empty", "signs")
def _(w: World, tmp: Path) -> Scenario:
    raw, out = tmp / "raw", copy(w.signs_data, tmp / "out")
    raw.mkdir()
    return Scenario(rebuild(raw, out), str(raw / "train_signs"),
                    "folder not found; --data-dir must hold the raw SIGNS folders", [out])


@case("raw-folder-empty", "ner")
def _(w: World, tmp: Path) -> Scenario:
    raw, out = tmp / "raw", copy(w.ner_data, tmp / "out")
    raw.mkdir()
    return Scenario(rebuild(raw, out, "--task", "ner"), str(raw),
                    "no corpus file in this folder", [out])


@case("raw-split-missing", "build")
def _(w: World, tmp: Path) -> Scenario:
    raw, out = copy(w.signs_raw, tmp / "raw"), copy(w.signs_data, tmp / "out")
    shutil.rmtree(raw / "test_signs")
    return Scenario(rebuild(raw, out), str(raw / "test_signs"), "folder not found", [out])


@case("raw-split-empty", "build")
def _(w: World, tmp: Path) -> Scenario:
    raw, out = copy(w.signs_raw, tmp / "raw"), copy(w.signs_data, tmp / "out")
    for image in (raw / "test_signs").iterdir():
        image.unlink()
    return Scenario(rebuild(raw, out), str(raw / "test_signs"),
                    "no .jpg/.jpeg/.png images in this folder", [out])


# -------------------------------------------------------------------------- images

@case("image-corrupt", "build")
def _(w: World, tmp: Path) -> Scenario:
    raw, out = copy(w.signs_raw, tmp / "raw"), copy(w.signs_data, tmp / "out")
    image = nth(raw / "train_signs", 3)
    image.write_bytes(image.read_bytes()[:100])  # a download cut short
    return Scenario(rebuild(raw, out), str(image), "not a readable image", [out])


@case("image-corrupt", "train")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.signs_run, tmp / "run"), copy(w.signs_data, tmp / "data")
    image = nth(data / "val_signs", 5)
    image.write_bytes(image.read_bytes()[:100])
    return Scenario(train_over(run, data), str(image), "not a readable image", [run, data])


@case("image-not-an-image", "build")
def _(w: World, tmp: Path) -> Scenario:
    raw, out = copy(w.signs_raw, tmp / "raw"), copy(w.signs_data, tmp / "out")
    stray = raw / "test_signs" / "2_IMG_9999.jpg"
    stray.write_text("<html>404 Not Found</html>\n")
    return Scenario(rebuild(raw, out), str(stray), "not a readable image", [out])


@case("image-name-without-label", "build")
def _(w: World, tmp: Path) -> Scenario:
    raw, out = copy(w.signs_raw, tmp / "raw"), copy(w.signs_data, tmp / "out")
    stray = raw / "train_signs" / "IMG_1.jpg"
    shutil.copyfile(nth(raw / "train_signs"), stray)
    return Scenario(rebuild(raw, out), str(stray), "file name does not start with a label",
                    [out])


@case("image-name-without-label", "train")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.signs_run, tmp / "run"), copy(w.signs_data, tmp / "data")
    stray = data / "val_signs" / "IMG_1.jpg"
    shutil.copyfile(nth(data / "val_signs"), stray)
    return Scenario(train_over(run, data), str(stray), "file name does not start with a label",
                    [run, data])


@case("label-out-of-range", "signs-build")
def _(w: World, tmp: Path) -> Scenario:
    raw, out = copy(w.signs_raw, tmp / "raw"), copy(w.signs_data, tmp / "out")
    stray = raw / "train_signs" / "7_IMG_1.jpg"
    shutil.copyfile(nth(raw / "train_signs"), stray)
    return Scenario(rebuild(raw, out), str(stray),
                    "label 7 is outside 0..5; fix the file name or pass --num-classes", [out])


@case("label-out-of-range", "signs-train")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.signs_run, tmp / "run"), copy(w.signs_data, tmp / "data")
    stray = data / "train_signs" / "6_IMG_1.jpg"
    shutil.copyfile(nth(data / "train_signs"), stray)
    return Scenario(train_over(run, data), str(stray),
                    "label 6 is outside 0..5; fix the file name or raise num_classes", [run, data])


@case("label-out-of-range", "ner-train")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.ner_run, tmp / "run"), copy(w.ner_data, tmp / "data")
    edit_line(data / "val" / "labels.txt", 4, lambda line: "B-zzz" + line[line.index(" "):])
    return Scenario(train_over(run, data), f"{data / 'val' / 'labels.txt'}:4",
                    "tag 'B-zzz' is not one the model knows", [run, data])


# ------------------------------------------------------------------ NER split files

@case("lines-mismatch", "build-vocab")
def _(w: World, tmp: Path) -> Scenario:
    data = copy(w.ner_data, tmp / "data")
    labels = data / "train" / "labels.txt"
    labels.write_text("".join(labels.read_text().splitlines(keepends=True)[:-1]))
    return Scenario(["build-vocab", "--data-dir", data], str(labels),
                    "lines but", [data])


@case("lines-mismatch", "train")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.ner_run, tmp / "run"), copy(w.ner_data, tmp / "data")
    sentences = data / "val" / "sentences.txt"
    sentences.write_text(sentences.read_text() + "One more sentence .\n")
    return Scenario(train_over(run, data), str(sentences), "lines but", [run, data])


@case("tokens-tags-mismatch", "build-vocab")
def _(w: World, tmp: Path) -> Scenario:
    data = copy(w.ner_data, tmp / "data")
    labels = data / "val" / "labels.txt"
    edit_line(labels, 3, lambda line: "O " + line)
    return Scenario(["build-vocab", "--data-dir", data], f"{labels}:3",
                    "tags but", [data])


@case("tokens-tags-mismatch", "train")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.ner_run, tmp / "run"), copy(w.ner_data, tmp / "data")
    labels = data / "train" / "labels.txt"
    edit_line(labels, 10, lambda line: line.rsplit(" ", 1)[0])
    return Scenario(train_over(run, data), f"{labels}:10", "tags but", [run, data])


# --------------------------------------------------------------------- text encoding

def kaggle_sample(w: World) -> bytes:
    return (w.ner_raw / "ner_dataset.csv").read_bytes()


@case("wrong-encoding", "kaggle-utf16")
def _(w: World, tmp: Path) -> Scenario:
    out, corpus = copy(w.ner_data, tmp / "out"), tmp / "ner_dataset.csv"
    corpus.write_bytes(kaggle_sample(w).decode("cp1252").encode("utf-16"))
    return Scenario(rebuild(corpus, out, "--task", "ner"), f"{corpus}:1", "UTF-16 text", [out])


@case("wrong-encoding", "kaggle-undecodable-byte")
def _(w: World, tmp: Path) -> Scenario:
    out, corpus = copy(w.ner_data, tmp / "out"), tmp / "ner_dataset.csv"
    lines = kaggle_sample(w).split(b"\n")
    lines[12] = lines[12].replace(b",", b",\x81", 1)  # 0x81 is a hole in windows-1252
    corpus.write_bytes(b"\n".join(lines))
    return Scenario(rebuild(corpus, out, "--task", "ner"), f"{corpus}:13",
                    "byte 0x81 is not windows-1252 text", [out])


@case("wrong-encoding", "conll-utf16")
def _(w: World, tmp: Path) -> Scenario:
    out, corpus = copy(w.ner_data, tmp / "out"), tmp / "corpus.conll"
    corpus.write_text("John B-per\nlives O\n\nParis B-geo\n", encoding="utf-16")
    return Scenario(rebuild(corpus, out, "--task", "ner"), f"{corpus}:1",
                    "pass --encoding utf-16", [out])


@case("wrong-encoding", "split-file")
def _(w: World, tmp: Path) -> Scenario:
    data = copy(w.ner_data, tmp / "data")
    sentences = data / "train" / "sentences.txt"
    lines = sentences.read_bytes().split(b"\n")
    lines[4] += b" caf\xe9"  # latin-1, as an editor set to it would save it
    sentences.write_bytes(b"\n".join(lines))
    return Scenario(["build-vocab", "--data-dir", data], f"{sentences}:5",
                    "byte 0xE9 is not UTF-8 text", [data])


@case("wrong-encoding", "params-utf16")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    params = run / "params.json"
    params.write_bytes(params.read_text().encode("utf-16"))
    return Scenario(train_over(run, w.signs_data), str(params), "not UTF-8 text", [run])


# --------------------------------------------------------------------------- CSV

@case("csv-empty", "empty-file")
def _(w: World, tmp: Path) -> Scenario:
    out, corpus = copy(w.ner_data, tmp / "out"), tmp / "ner_dataset.csv"
    corpus.write_bytes(b"")
    return Scenario(rebuild(corpus, out, "--task", "ner"), str(corpus), "empty file", [out])


@case("csv-empty", "header-only")
def _(w: World, tmp: Path) -> Scenario:
    out, corpus = copy(w.ner_data, tmp / "out"), tmp / "ner_dataset.csv"
    corpus.write_bytes(b"Sentence #,Word,POS,Tag\r\n")
    return Scenario(rebuild(corpus, out, "--task", "ner"), str(corpus),
                    "has a header but no data rows", [out])


@case("csv-wrong-columns", "build")
def _(w: World, tmp: Path) -> Scenario:
    out, corpus = copy(w.ner_data, tmp / "out"), tmp / "ner_dataset.csv"
    corpus.write_bytes(b"id,token,label\n1,John,B-per\n")
    return Scenario(rebuild(corpus, out, "--task", "ner"), f"{corpus}:1",
                    "a Kaggle NER CSV needs 'Sentence #', 'Word' and 'Tag'", [out])


# --------------------------------------------------------------------- checkpoints

def evaluate(run: Path, data: Path, *flags: object) -> list[object]:
    return ["evaluate", "--data-dir", data, "--model-dir", run, *flags]


def resume(run: Path, data: Path, restore: object = "last") -> list[object]:
    return ["train", "--data-dir", data, "--model-dir", run, "--restore", restore,
            "--set", "num_epochs=2"]


@case("checkpoint-truncated", "evaluate")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    best = run / "best.pt"
    best.write_bytes(best.read_bytes()[:best.stat().st_size // 2])
    return Scenario(evaluate(run, w.signs_data), str(best), "not a readable checkpoint", [run])


@case("checkpoint-truncated", "train-restore")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    return Scenario(resume(run, w.signs_data), str(last), "not a readable checkpoint", [run])


@case("checkpoint-truncated", "flipped-byte")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    best = run / "best.pt"
    data = bytearray(best.read_bytes())
    data[largest_member_data_offset(best)] ^= 0x10  # bit rot inside the weights
    best.write_bytes(bytes(data))
    return Scenario(evaluate(run, w.signs_data), str(best), "fails its checksum", [run])


def largest_member_data_offset(path: Path) -> int:
    """Where the stored bytes of the largest archive member start (they are not compressed)."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(fh.read(2), "little"), \
            int.from_bytes(fh.read(2), "little")
    return info.header_offset + 30 + name_len + extra_len


@case("checkpoint-missing", "evaluate")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    (run / "best.pt").unlink()
    return Scenario(evaluate(run, w.signs_data), str(run / "best.pt"),
                    "checkpoint not found; train first", [run])


@case("predict-input-missing", "ner")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.ner_run, tmp / "run")
    missing = tmp / "sentencs.txt"
    return Scenario(["predict", "--model-dir", run, missing], str(missing),
                    "not found; pass a text file of one sentence a line", [run])


@case("checkpoint-other-architecture", "train-restore")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    set_params(run, num_channels=8)  # the run was trained with 4
    return Scenario(resume(run, w.signs_data), str(run / "last.pt"),
                    "checkpoint does not fit this model (shape: blocks.0.0.weight (4, 3, 3, 3) "
                    "vs model (8, 3, 3, 3)", [run])


class CallsPrint:
    def __reduce__(self):
        return (print, ("this ran while loading",))


@case("checkpoint-pickled-code", "evaluate")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    state = torch.load(run / "best.pt", weights_only=True)
    torch.save({**state, "extra": CallsPrint()}, run / "best.pt", pickle_module=pickle)
    return Scenario(evaluate(run, w.signs_data), str(run / "best.pt"),
                    "refused to load: the file holds code (print)", [run])


# ------------------------------------------------------------------------ the run

_HOLDERS: list[subprocess.Popen] = []


@pytest.fixture(scope="module", autouse=True)
def _end_lock_holders():
    yield
    for holder in _HOLDERS:
        holder.stdin.close()  # the holder exits at the end of its input
        holder.wait(timeout=30)


def hold_lock(path: Path) -> int:
    """Start a process that holds `path`'s lock as a running `train` would; its pid."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from torchstarter.utils.locking import FileLock; "
         "FileLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()",
         str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    _HOLDERS.append(holder)
    assert holder.stdout.readline().strip() == "held"
    return holder.pid


@case("run-active", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    pid = hold_lock(run / LOCK)  # a live process that is not this one
    return Scenario(resume(run, w.signs_data),
                    f"{run}: a run is already training here (pid {pid})",
                    "a run is already training here (pid", [run])


@case("nan-loss", "train-restore")
def _(w: World, tmp: Path) -> Scenario:
    run, data = copy(w.poison_run, tmp / "run"), copy(w.poison_data, tmp / "data")
    (data / "nan").touch()
    # the resumed run logs, records its params and rewrites the metrics files from the
    # checkpoint (same bytes); the checkpoints themselves must stay as epoch 1 left them
    return Scenario(resume(run, data), "last.pt", "loss is nan at epoch 2",
                    [run / "last.pt", run / "best.pt"])


# ------------------------------------------- issue 17: paths, results, odd inputs

def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def search_parent(tmp: Path, search_json: str) -> Path:
    parent = tmp / "parent"
    parent.mkdir()
    (parent / "params.json").write_text(json.dumps({**TINY, "num_epochs": 1}))
    (parent / "search.json").write_text(search_json)
    return parent


def search_with(w: World, tmp: Path, flags: list[object], names: str, says: str) -> Scenario:
    """A one-point search over the sample data, given flags that must be refused."""
    parent = search_parent(tmp, '{"space": {"learning_rate": [0.001]}}')
    return Scenario(["search", "--parent-dir", parent, "--data-dir", w.signs_data, *flags],
                    names, says, [parent])


@case("overwrite-not-a-dataset", "build-dataset")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")  # a trained experiment, not a built dataset
    return Scenario(rebuild(w.signs_raw, run), f"{run}: holds",
                    "but no build_report.json, so this command did not make it", [run])


@case("output-dir-holds-you", "build-dataset")
def _(w: World, tmp: Path) -> Scenario:
    data = copy(w.signs_data, tmp / "data")
    inner = data / "train_signs"
    here = Path.cwd()
    os.chdir(inner)  # --output-dir .. from inside the folder to replace
    _CHDIR_BACK.append(here)
    return Scenario(rebuild(w.signs_raw, Path("..")), "..: is the folder you are in",
                    "is the folder you are in (or holds it)", [data])


@case("json-too-deep", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    (run / "params.json").write_text('{"task": "signs", "x": ' + nested(600) + "}")
    return Scenario(train_over(run, w.signs_data), f"{run / 'params.json'}",
                    "JSON nested 601 levels deep (at most 100)", [run])


@case("json-too-deep", "search")
def _(w: World, tmp: Path) -> Scenario:
    parent = search_parent(tmp, nested(2000))
    return Scenario(["search", "--parent-dir", parent, "--data-dir", w.signs_data],
                    f"{parent / 'search.json'}", "JSON nested 2000 levels deep", [parent])


@case("set-twice", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    return Scenario(train_over(run, w.signs_data) + ["--set", "num_epochs=1", "--set",
                                                     "num_epochs=2"],
                    "--set num_epochs", "given twice (num_epochs=1 and num_epochs=2)", [run])


@case("restore-and-overwrite", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    return Scenario(train_over(run, w.signs_data) + ["--restore", "last"],
                    "--restore last and --overwrite", "pass one of them", [run])


@case("restore-before-first-best", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    (run / "best.pt").unlink()  # as after an interrupt inside epoch 1: only last.pt
    return Scenario(["train", "--data-dir", w.signs_data, "--model-dir", run, "--restore",
                     "best"], f"{run / 'best.pt'}", "but last.pt is there; pass --restore last",
                    [run])


@case("schedule-interval-mismatch", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    set_params(run, scheduler="plateau", scheduler_interval="step")
    return Scenario(train_over(run, w.signs_data), str(run / "params.json"),
                    "key 'scheduler_interval': 'step' needs scheduler cosine or onecycle",
                    [run])


@case("warmup-given-twice", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    set_params(run, warmup_steps=100, warmup_fraction=0.1)
    return Scenario(train_over(run, w.signs_data), str(run / "params.json"),
                    "keys 'warmup_steps' and 'warmup_fraction' are both set", [run])


@case("class-weights-with-crf", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.ner_run, tmp / "run")
    set_params(run, crf=True, class_weights="balanced")
    return Scenario(train_over(run, w.ner_data), str(run / "params.json"),
                    "a CRF's loss is per sentence", [run])


@case("lr-find-trained-run", "no-force")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    return Scenario(["lr-find", "--data-dir", w.signs_data, "--model-dir", run], str(run),
                    "holds a trained run", [run])


@case("lr-find-trained-run", "apply")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    return Scenario(["lr-find", "--data-dir", w.signs_data, "--model-dir", run, "--force",
                     "--apply"], str(run), "holds a trained run", [run])


@case("lr-find-bad-range", "reversed")
def _(w: World, tmp: Path) -> Scenario:
    run = tmp / "fresh"
    run.mkdir()
    shutil.copy(w.signs_run / "params.json", run / "params.json")
    return Scenario(["lr-find", "--data-dir", w.signs_data, "--model-dir", run, "--start-lr",
                     "1", "--end-lr", "1e-3"], "--start-lr 1", "need 0 < start < end", [run])


@case("params-not-a-file", "folder")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    (run / "params.json").unlink()
    (run / "params.json").mkdir()
    return Scenario(train_over(run, w.signs_data), f"{run / 'params.json'}",
                    "is a folder, not a file", [run])


@case("params-not-a-file", "dangling-link")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    (run / "params.json").unlink()
    (run / "params.json").symlink_to(tmp / "gone.json")
    return Scenario(train_over(run, w.signs_data), f"{run / 'params.json'}",
                    "which does not exist; fix the link", [run])


@case("task-not-a-name", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    set_params(run, task=5)
    return Scenario(train_over(run, w.signs_data), f"{run / 'params.json'}",
                    "key 'task': expected a task name in quotes", [run])


@case("command-line-mistake", "train")
def _(w: World, tmp: Path) -> Scenario:
    run = copy(w.signs_run, tmp / "run")
    return Scenario(["train", "--model-dir", run], "--data-dir",
                    "the following arguments are required: --data-dir", [run])


@case("search-storage-not-a-journal", "folder")
def _(w: World, tmp: Path) -> Scenario:
    return search_with(w, tmp, ["--storage", tmp], f"--storage {tmp}",
                       "is a folder; give the journal")


@case("search-storage-not-a-journal", "other-file")
def _(w: World, tmp: Path) -> Scenario:
    parent = search_parent(tmp, '{"space": {"learning_rate": [0.001]}}')
    return Scenario(["search", "--parent-dir", parent, "--data-dir", w.signs_data,
                     "--storage", parent / "params.json"], f"{parent / 'params.json'}",
                    "not an Optuna journal file", [parent])


@case("search-database-unusable", "nothing-listening")
def _(w: World, tmp: Path) -> Scenario:
    return search_with(w, tmp, ["--storage", "postgresql://me:pw@127.0.0.1:1/optuna"],
                       "--storage postgresql://me:***@127.0.0.1:1/optuna",
                       "cannot open the database")


@case("search-database-unusable", "unknown-scheme")
def _(w: World, tmp: Path) -> Scenario:
    return search_with(w, tmp, ["--storage", "nosuchdb://host/x"],
                       "--storage nosuchdb://host/x", "cannot open the database")


@case("search-study-of-another-space", "database")
def _(w: World, tmp: Path) -> Scenario:
    from torchstarter.search.space import Objective, parse_search
    from torchstarter.search.study import open_storage, open_study

    url = f"sqlite:///{tmp / 'studies.db'}"
    storage, where = open_storage(tmp, url)
    open_study(storage, "lr", parse_search({"space": {"learning_rate": [0.1]}}, "s.json"),
               Objective("accuracy", "max", {}), where, own_storage=False)
    parent = search_parent(tmp, '{"space": {"dropout_rate": [0.1, 0.2]}}')
    return Scenario(["search", "--parent-dir", parent, "--data-dir", w.signs_data,
                     "--storage", url, "--study-name", "lr"], f"{parent / 'search.json'}",
                    "the space differs from the one study 'lr' was started with",
                    [parent, tmp / "studies.db"])


@case("search-heartbeat-without-database", "journal")
def _(w: World, tmp: Path) -> Scenario:
    return search_with(w, tmp, ["--heartbeat", "30"], "--heartbeat 30",
                       "only a database storage has a heartbeat")


@case("requeue-cannot-work", "no-restore-auto")
def _(w: World, tmp: Path) -> Scenario:
    return Scenario(["train", "--model-dir", w.signs_run, "--data-dir", w.signs_data,
                     "--requeue"], "train --requeue", "add --restore auto", [w.signs_run])


def evaluated(run: Path, data: Path, target: Path) -> Path:
    """A copy of a trained run with its test evaluation written."""
    copy(run, target)
    cli("evaluate", "--model-dir", target, "--data-dir", data)
    return target


@case("compare-not-comparable", "tasks")
def _(w: World, tmp: Path) -> Scenario:
    a = evaluated(w.signs_run, w.signs_data, tmp / "a")
    b = evaluated(w.ner_run, w.ner_data, tmp / "b")
    return Scenario(["compare", a, b], f"{a} and {b}", "experiments of different tasks",
                    [a, b])


@case("compare-not-comparable", "data")
def _(w: World, tmp: Path) -> Scenario:
    a = evaluated(w.signs_run, w.signs_data, tmp / "a")
    fewer = copy(w.signs_data, tmp / "fewer")
    next(iter(sorted((fewer / "test_signs").iterdir()))).unlink()
    b = evaluated(w.signs_run, fewer, tmp / "b")
    return Scenario(["compare", a, b], f"{b / 'predictions_test_best.jsonl'}",
                    "evaluated on different data", [a, b])


@case("compare-not-comparable", "not-evaluated")
def _(w: World, tmp: Path) -> Scenario:
    a = evaluated(w.signs_run, w.signs_data, tmp / "a")
    b = copy(w.signs_run, tmp / "b")
    return Scenario(["compare", a, b], f"{b / 'predictions_test_best.jsonl'}",
                    "has no evaluation on test with best weights yet", [a, b])


@case("compare-not-comparable", "search-parent")
def _(w: World, tmp: Path) -> Scenario:
    a = evaluated(w.signs_run, w.signs_data, tmp / "a")
    parent = search_parent(tmp, '{"space": {"learning_rate": [0.001]}}')
    return Scenario(["compare", parent, a], f"{parent}", "a search parent, not one experiment",
                    [a, parent])


def damaged_compare(w: World, tmp: Path, damage: Callable[[Path], None], says: str
                    ) -> Scenario:
    """compare of two evaluated runs whose second predictions file `damage` changed."""
    a = evaluated(w.signs_run, w.signs_data, tmp / "a")
    b = evaluated(w.signs_run, w.signs_data, tmp / "b")
    path = b / "predictions_test_best.jsonl"
    damage(path)
    return Scenario(["compare", a, b], f"{path}", says, [a, b])


@case("predictions-file-damaged", "edited")
def _(w: World, tmp: Path) -> Scenario:
    return damaged_compare(w, tmp, lambda path: edit_line(
        path, 3, lambda line: line.replace('"true": "', '"true": "9', 1)),
        "no longer match the hash in its header")


@case("predictions-file-damaged", "cut-short")
def _(w: World, tmp: Path) -> Scenario:
    return damaged_compare(w, tmp, lambda path: path.write_text("".join(
        path.read_text().splitlines(keepends=True)[:-3])), "cut short or edited")


@case("tags-not-bio", "build-dataset")
def _(w: World, tmp: Path) -> Scenario:
    corpus = tmp / "corpus.conll"
    corpus.write_text("EU B-ORG\nrejects O\n\nPeter PER\nsleeps O\n", encoding="utf-8")
    out = copy(w.ner_data, tmp / "data")
    return Scenario(rebuild(corpus, out, "--task", "ner"), f"{corpus}: sentence 2",
                    "tag 'PER', which is not BIO", [out, corpus])


@case("tags-not-bio", "build-vocab")
def _(w: World, tmp: Path) -> Scenario:
    data = copy(w.ner_data, tmp / "data")
    labels = data / "val" / "labels.txt"
    edit_line(labels, 2, lambda line: " ".join(["E-PER", *line.split()[1:]]))
    keep = [data / name for name in ("words.txt", "tags.txt", "dataset_params.json")]
    return Scenario(["build-vocab", "--data-dir", data], f"{labels}:2",
                    "tag 'E-PER' is not BIO", keep)


@case("min-count-too-high", "build-vocab")
def _(w: World, tmp: Path) -> Scenario:
    data = copy(w.ner_data, tmp / "data")
    keep = [data / name for name in ("words.txt", "tags.txt", "dataset_params.json")]
    return Scenario(["build-vocab", "--data-dir", data, "--min-count", 10**9],
                    "--min-count 1000000000", "no word of train occurs that often", keep)


_CHDIR_BACK: list[Path] = []


@pytest.fixture(autouse=True)
def _back_to_where_we_were():
    yield
    while _CHDIR_BACK:
        os.chdir(_CHDIR_BACK.pop())


# ---------------------------------------------------------------------- the checks

def snapshot(paths: list[Path]) -> dict[str, tuple[bytes, int]]:
    """Content and mtime of every file under `paths`, so any write, removal or addition shows."""
    state = {}
    for root in paths:
        found = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in found:
            if path.name != RUN_RECORD:
                state[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return state


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_keeps_earlier_files(bad, world, tmp_path, capsys):
    scenario = bad.make(world, tmp_path)
    assert scenario.keep, "every case guards what earlier commands wrote"
    before = snapshot(scenario.keep)
    capsys.readouterr()
    code = main([str(arg) for arg in scenario.argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert scenario.names in err, f"should name {scenario.names}: {err}"
    assert scenario.says in err
    assert snapshot(scenario.keep) == before
    assert not list(tmp_path.rglob("previous_runs")), "--overwrite archived before failing"
    row = doc_rows()[bad.row]
    assert f"`{scenario.argv[0]}`" in row["command"], f"docs/errors.md {bad.row}: command"
    assert scenario.says in row["shown"], f"docs/errors.md {bad.row} should show: {scenario.says}"


# --------------------------------------------------------------- docs stay in sync

def doc_rows() -> dict[str, dict[str, str]]:
    """The table of docs/errors.md by row id: mistake, command, shown, todo."""
    rows = {}
    for line in ERRORS_DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([a-z0-9-]+)` \|(.*)\|\s*$", line)
        if match:
            cells = [c.strip() for c in match.group(2).split(" | ")]
            assert len(cells) == 4, f"{match.group(1)}: expected 4 cells after the id"
            rows[match.group(1)] = dict(zip(("mistake", "command", "shown", "todo"), cells,
                                            strict=True))
    return rows


# Rows proven by tests in other modules, each of which lists its rows in ROWS.
OTHER_ROWS = {**test_disk_errors.ROWS, **test_hostile_inputs.ROWS, **test_images_task.ROWS,
              **test_ner_kept_splits.ROWS, **test_ner_embeddings.ROWS, **test_export.ROWS,
              **test_serve.ROWS}


def test_every_row_of_the_errors_doc_has_a_test_and_every_test_a_row():
    rows = doc_rows()
    covered = {c.row for c in CASES} | set(OTHER_ROWS)
    assert set(rows) == covered, (f"rows without a test: {sorted(set(rows) - covered)}; "
                                  f"tests without a row: {sorted(covered - set(rows))}")


def test_disk_rows_name_their_tests():
    rows = doc_rows()
    for row, (command, says, tests) in OTHER_ROWS.items():
        assert f"`{command}`" in rows[row]["command"] or command in rows[row]["command"]
        assert says in rows[row]["shown"], row
        assert tests and all(t.__name__.startswith("test_") for t in tests)


# ------------------------------------------------- arbitrary input: parsed or ours

def assert_ours(exc: UserError, path: Path) -> None:
    message = str(exc)
    assert "\n" not in message and str(path) in message, message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_as_params_json_give_a_dict_or_a_user_error_naming_it(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.json"
        path.write_bytes(data)
        try:
            assert isinstance(read_params_file(path), dict)
        except UserError as exc:
            assert_ours(exc, path)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_set_override_gives_a_dict_or_a_user_error(pair):
    try:
        assert isinstance(parse_overrides([pair]), dict)
    except UserError as exc:
        assert "\n" not in str(exc) and "--set" in str(exc)


HEADERS = [b"", b"Sentence #,Word,POS,Tag\n", b"\xef\xbb\xbfSentence #,Word,Tag\r\n",
           b"\xff\xfe", b"-DOCSTART- O\n\n"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(HEADERS), st.binary(max_size=300),
       st.sampled_from(["corpus.csv", "corpus.conll", "corpus.txt"]),
       st.sampled_from(["auto", "kaggle", "conll"]))
def test_any_bytes_as_a_corpus_give_sentences_or_a_user_error_naming_it(head, data, name, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(head + data)
        try:
            sentences = read_corpus(path, fmt)
        except UserError as exc:
            assert_ours(exc, path)
        else:
            assert sentences and all(len(tokens) == len(tags) > 0 and all(tokens) and all(tags)
                                     for tokens, tags in sentences)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120), st.binary(max_size=120))
def test_any_bytes_as_split_files_give_sentences_or_a_user_error_naming_one(text, labels):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "sentences.txt").write_bytes(text)
        (folder / "labels.txt").write_bytes(labels)
        try:
            sentences = read_split(folder)
        except UserError as exc:
            assert_ours(exc, folder)
        else:
            assert all(len(tokens) == len(tags) > 0 for tokens, tags in sentences)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80), st.binary(max_size=80), st.binary(max_size=60))
def test_any_bytes_as_vocabulary_files_give_a_vocab_or_a_user_error(words, tags, params):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "words.txt").write_bytes(b"<pad>\nUNK\n" + words)
        (folder / "tags.txt").write_bytes(tags)
        (folder / "dataset_params.json").write_bytes(params)
        try:
            vocab = Vocab.load(folder)
        except UserError as exc:
            assert_ours(exc, folder)
        else:
            assert vocab.words[:2] == ["<pad>", "UNK"] and vocab.tags


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.integers(min_value=1, max_value=20))
def test_any_file_name_gives_a_label_in_range_or_a_user_error(name, num_classes):
    # A name with a line break would break the one-line message: the CLI has to escape
    # those (see the report); here the name is kept to one line.
    path = Path("raw") / re.sub(r"[/\x00\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]", "", name)
    try:
        label = label_from_name(path, num_classes)
    except UserError as exc:
        assert_ours(exc, path)
    else:
        assert 0 <= label < num_classes


def small_checkpoint() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.pt"
        save_checkpoint({"model": {"w": torch.arange(40.0)}, "epoch": 3,
                         "history": [{"epoch": 1, "val_loss": 0.5}]}, path)
        return path.read_bytes()


SMALL_CHECKPOINT = small_checkpoint()


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(SMALL_CHECKPOINT) - 1),
       st.sampled_from(["truncate", "flip", "overwrite"]), st.binary(min_size=1, max_size=16))
def test_any_damage_to_a_checkpoint_gives_its_state_or_a_user_error(at, how, junk):
    data = bytearray(SMALL_CHECKPOINT)
    if how == "truncate":
        del data[at:]
    elif how == "flip":
        data[at] ^= junk[0] or 1
    else:
        data[at:at + len(junk)] = junk
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.pt"
        path.write_bytes(bytes(data))
        try:
            state = load_checkpoint(path)
        except UserError as exc:
            assert_ours(exc, path)
        else:  # only bytes no reader looks at (zip padding, comments) can change unnoticed
            assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.arange(40.0))


def test_a_kaggle_csv_saved_as_utf8_without_a_byte_order_mark_reads_as_utf8(tmp_path):
    path = tmp_path / "ner_dataset.csv"
    path.write_bytes("Sentence #,Word,POS,Tag\nSentence: 1,Café,NNP,B-geo\n,Zürich,NNP,I-geo\n"
                     .encode())
    assert read_corpus(path) == [(["Café", "Zürich"], ["B-geo", "I-geo"])]


def test_a_corpus_that_switches_encoding_after_its_start_names_the_line(tmp_path):
    """The start of the file decides UTF-8; a windows-1252 byte further on is an error."""
    filler = b",word,NN,O\n" * 8000  # past the part of the file the encoding is judged on
    path = tmp_path / "ner_dataset.csv"
    path.write_bytes("Sentence #,Word,POS,Tag\nSentence: 1,Café,NNP,B-geo\n".encode()
                     + filler + b",Z\xfcrich,NNP,I-geo\n")
    with pytest.raises(UserError, match=r"ner_dataset.csv:8003: byte 0xFC is not UTF-8 text "
                                        r"\(the file starts as UTF-8"):
        read_corpus(path)
