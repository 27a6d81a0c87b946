"""Fuzzing every subcommand with hostile arguments and files (issue 17, point 2).

Each test draws a command line plus the files it meets (paths of every spelling,
symlinks to files and folders, dangling links, link loops, odd names; files of the
wrong kind, encoding or depth; flag values of the wrong type), lays them out in a fresh
sandbox, runs the CLI in-process (`torchstarter.cli.main.main`, from inside the sandbox)
and checks what a user would see:

* the exit code is 0 or 2; 2 comes with exactly one stderr line, `error: ...`;
* no traceback, no Python warning (what `python -W default` would print is recorded);
* nothing outside the command's declared output changed: the whole sandbox is
  snapshotted (paths, sizes, mtimes in ns, SHA-256 of contents) before and after, and
  only the output folder(s) that the command line names may differ (build-dataset and
  sample-data --output-dir, build-vocab --data-dir, train/evaluate --model-dir, demo
  --output-dir, search --parent-dir and --storage, synthesize's results files, new DIR;
  predict none), plus new parent folders of those;
* no temporary file is left anywhere: any hidden entry that was not there before
  (utils/atomic.py and utils/folders.py name them `.<name>.<hex>[.tmp|.new]`,
  `.<name>.old`, `.<name>.<pid>.link`), except the documented lock files
  (`.train.lock` only while a run holds it; a search's `.search.lock`,
  `.search.sampling` and `.search_threads`).

Profiles (environment variable TORCHSTARTER_FUZZ):

  short (default, for CI: derandomized, a few examples per test, about a minute):
      pytest tests/test_cli_fuzz.py
  long (random seed, thousands of examples per test; hours on 2 cores):
      TORCHSTARTER_FUZZ=long TORCHSTARTER_FUZZ_EXAMPLES=3000 \
          pytest tests/test_cli_fuzz.py --hypothesis-show-statistics -p no:cacheprovider
      (reproduce a failure with --hypothesis-seed=N, printed on failure)

TORCHSTARTER_FUZZ_RECORD=cases.jsonl makes failing cases append one JSON line each
(command line, files, exit code, stderr head and tail, known-defect group) instead of
failing the test, so a long run keeps exploring past the first bug.
TORCHSTARTER_FUZZ_TIMEOUT (seconds, default 240) bounds one command; a command that
runs longer fails the case ("hang").
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shlex
import shutil
import signal
import stat
import struct
import sys
import tempfile
import traceback
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from torchstarter.cli.main import _task_in, build_parser, main

# ---------------------------------------------------------------------------- profiles

PROFILE = os.environ.get("TORCHSTARTER_FUZZ", "short")
LONG = PROFILE == "long"
RECORD = os.environ.get("TORCHSTARTER_FUZZ_RECORD")
TIMEOUT = float(os.environ.get("TORCHSTARTER_FUZZ_TIMEOUT", "240"))


def fuzz(short_examples: int) -> settings:
    common = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))
    if LONG:
        return settings(max_examples=int(os.environ.get("TORCHSTARTER_FUZZ_EXAMPLES", "3000")),
                        derandomize=False, print_blob=True, **common)
    return settings(max_examples=short_examples, derandomize=True, **common)


# ------------------------------------------------------------------------------ cases

CWD = "{CWD}"  # replaced by the sandbox's absolute working folder when a case runs
SIGNS_TINY = {**TINY, "num_epochs": 1}
NER_TINY = {"task": "ner", "learning_rate": 1e-2, "batch_size": 8, "num_epochs": 1,
            "embedding_dim": 8, "lstm_hidden_dim": 8}
GOOD_PARAMS = {"signs": SIGNS_TINY, "ner": NER_TINY}

# Present in every sandbox, for paths to run into.
STANDARD: dict[str, tuple] = {
    "afile": ("file", b"just text\n"),
    "adir": ("dir", {}),
    "fulldir": ("dir", {"inside.txt": ("file", b"x\n")}),
    "dangling": ("link", "nowhere/at/all"),
    "loop": ("link", "loop"),
    "dirlink": ("link", "fulldir"),
    "filelink": ("link", "afile"),
    "bad.py": ("file", b"def (:\n"),  # a task file with a syntax error
    "empty.py": ("file", b""),  # a task file that defines nothing
}
# Hidden files a command may leave behind on purpose (documented locks).
ALLOWED_HIDDEN = {".train.lock", ".search.lock", ".search.sampling", ".search_threads"}


@dataclass
class Case:
    argv: list[str]
    files: dict[str, tuple] = field(default_factory=dict)
    stdin: bytes = b""
    tags: set[str] = field(default_factory=set)

    def describe(self) -> str:
        lines = ["$ torchstarter " + shlex.join(self.argv).replace(CWD, "$PWD")]
        if self.stdin:
            lines.append(f"  stdin: {self.stdin[:80]!r}{'...' if len(self.stdin) > 80 else ''}")
        for rel, entry in self.files.items():
            if rel not in STANDARD or entry is not STANDARD[rel]:
                lines.append(f"  {rel!r}: {_entry_text(entry)}")
        if self.tags:
            lines.append(f"  tags: {', '.join(sorted(self.tags))}")
        return "\n".join(lines)


def _entry_text(entry: tuple) -> str:
    kind = entry[0]
    if kind == "file":
        data = entry[1]
        return f"file {len(data)} bytes {data[:60]!r}{'...' if len(data) > 60 else ''}"
    if kind == "dir":
        return "folder {" + ", ".join(f"{k!r}: {_entry_text(v)}" for k, v in entry[1].items()) + "}"
    if kind == "link":
        return f"symlink -> {entry[1]!r}"
    return " ".join(repr(part) for part in entry)


class Scene:
    """What a strategy builds up: files under the working folder, tags, stdin."""

    def __init__(self) -> None:
        self.files: dict[str, tuple] = dict(STANDARD)
        self.tags: set[str] = set()
        self.stdin = b""
        self._links = 0

    def put(self, rel: str, entry: tuple, *tags: str) -> None:
        self.files.pop(rel, None)  # re-inserted last: laid out after what it replaces
        self.files[rel] = entry
        self.tags.update(tags)

    def alias(self, target: str) -> str:
        """A new symlink to `target`; its name."""
        self._links += 1
        name = f"alias{self._links}"
        self.put(name, ("link", target), "symlink")
        return name

    def case(self, argv: list[str]) -> Case:
        return Case(argv, self.files, self.stdin, self.tags)


def ex(argv: list[str], files: dict[str, tuple] | None = None, stdin: bytes = b"",
       tags: tuple[str, ...] = ()) -> Case:
    """An explicit case, run first in every profile: a reproduction of a defect fuzzing
    found (or one of issue 17's), so the short profile fails until it is fixed."""
    return Case(list(argv), {**STANDARD, **(files or {})}, stdin, set(tags))


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _json(obj: Any) -> tuple:
    return ("file", _utf8(json.dumps(obj)))


DEEP = ("make", "deep_json", "list", 5000, "{}")
SEARCH_PARENT = {"parent": ("dir", {}), "parent/params.json": _json(SIGNS_TINY),
                 "parent/search.json": ("file", b'{"space": {"learning_rate": [0.001]}}'),
                 "data": ("copy", "data_signs")}
LONG_NAME = "x" * 300


# ----------------------------------------------------------------- value strategies

NAMES = ["out", "out dir", "ünïcödé", "日本語", "emoji😀", "-dash", "--double", "a\nb",
         "tab\tname", "cr\rname", "x" * 255, "x" * 256, ".hidden", "...", "out.tmp",
         "back\\slash", "*?[]", "~", "$HOME", "a:b", "\udcff-latin1", " lead", "trail ",
         "'q\"", "con.json", "params.json"]
INT_TEXTS = ["0", "-1", "1", "7", "230", "2147483648", "99999999999999999999999", "1.5",
             "nan", "abc", "", " 3", "0x10", "1e3", "٣"]
FLOAT_TEXTS = ["0", "-0.0", "0.2", "0.5", "0.7", "1", "1.0", "-1", "nan", "inf", "-inf",
               "1e-320", "1e400", "abc", "", "0.15"]
# Flag values: half of the time a sensible one, so that runs get past argparse.
INTS = st.sampled_from(["1", "6", "230", "12"]) | st.sampled_from(INT_TEXTS)
FLOATS = st.sampled_from(["0.2", "0.5", "0.15", "0.7"]) | st.sampled_from(FLOAT_TEXTS)
# JSON values for params keys; SIZE keys never get values that would make a run huge.
HOSTILE_VALUES = [0, -1, 1, 1.5, -0.0, "x", "", None, True, False, [], {}, [1], {"a": 1},
                  1e308, -1e308, 2 ** 63, 2 ** 64, float("nan"), float("inf"), "1e-3", "\udcff"]
SIZE_KEYS = {"num_epochs", "num_channels", "embedding_dim", "lstm_hidden_dim", "num_layers",
             "char_embedding_dim", "char_filters", "num_workers", "num_threads",
             "pad_to_multiple", "batch_size", "step_size"}
SIZE_VALUES = [0, -1, 1, 2, 1.5, 1.0, None, True, "3", float("nan"), float("inf"), [], -0.0]
PARAM_KEYS = ["num_epochs", "batch_size", "learning_rate", "seed", "optimizer", "scheduler",
              "dropout_rate", "num_channels", "device", "precision", "metric", "metric_mode",
              "early_stopping_patience", "grad_clip_norm", "tensorboard", "plots",
              "save_summary_steps", "momentum", "gamma", "step_size", "weight_decay",
              "num_workers", "num_threads", "compile", "channels_last", "augmentation",
              "num_classes", "embedding_dim", "crf", "char_embedding_dim", "bidirectional",
              "task", "unknown_key", "learning rate", "lr", "tâche"]
# What a key may be set to without the run getting expensive (compile would build C++).
SAFE_CHOICES = {"compile": ["none", "bogus", 1], "device": ["cpu", "cuda", "auto", "tpu", 0],
                "precision": ["fp32", "bf16", "fp16", "fp8", None]}
TASK_SPECS = [5, None, "", [], {}, "nope", "x.py", "../afile", "afile", "signs ", "SIGNS",
              "torchstarter", "a..b", "bad.py", "empty.py", "\udcff", "loop", "fulldir",
              "dangling.py", 0.5, True]
OVERRIDE_TEXTS = ["0", "-1", "1", "2", "1.5", "1e400", "-1e400", "NaN", "Infinity", "null",
                  "true", "false", '"x"', "[]", "{}", '""', "9223372036854775808", "1e-320",
                  "[[[[]]]]", "", "abc", "é", "0.001", "cpu", "sgd", "cosine"]


@st.composite
def hostile_value(draw, key: str) -> Any:
    if key in SAFE_CHOICES:
        return draw(st.sampled_from(SAFE_CHOICES[key]))
    if key in SIZE_KEYS:
        return draw(st.sampled_from(SIZE_VALUES))
    return draw(st.sampled_from(HOSTILE_VALUES))


@st.composite
def override_args(draw, scene: Scene, cheap_keys: dict[str, str] | None = None) -> list[str]:
    """--set values: hostile keys and values; `cheap_keys` always come first."""
    pairs = [f"{k}={v}" for k, v in (cheap_keys or {}).items()]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        key = draw(st.sampled_from(PARAM_KEYS))
        text = draw(st.sampled_from(OVERRIDE_TEXTS))
        if key in SIZE_KEYS and text in ("9223372036854775808", "2"):
            text = "0"
        if key == "compile":
            text = draw(st.sampled_from(['"none"', '"bogus"', "1"]))
        form = draw(st.sampled_from(["k=v"] * 24 + ["no_equals", "=v", " k = v", "k="]))
        pair = {"k=v": f"{key}={text}", "no_equals": key or "x", "=v": f"={text}",
                " k = v": f" {key} = {text}", "k=": f"{key}="}[form]
        pairs.append(pair)
        scene.tags.add("bad_set")
    if not pairs:
        return []
    seen = [p.partition("=")[0].strip() for p in pairs]
    if len(set(seen)) != len(seen):
        scene.tags.add("dup_set")
    if draw(st.booleans()):
        return ["--set", *pairs]
    return [arg for pair in pairs for arg in ("--set", pair)]


@st.composite
def option(draw, scene: Scene, flag: str, value: str, aliases: tuple[str, ...] = ()) -> list[str]:
    """--flag VALUE, an alias of it, or --flag=VALUE."""
    name = draw(st.sampled_from((flag, *aliases)))
    if draw(st.integers(0, 3)) == 0 or (value.startswith("-") and draw(st.booleans())):
        return [f"{name}={value}"]
    if value.startswith("-"):
        scene.tags.add("dash_value")
    return [name, value]


def _alias(flag: str) -> tuple[str, ...]:
    rest = flag[2:]
    return ("--" + rest.replace("-", "_"),) if "-" in rest else ()


@st.composite
def opt(draw, scene: Scene, flag: str, value: str) -> list[str]:
    return draw(option(scene, flag, value, _alias(flag)))


@st.composite
def spelled(draw, scene: Scene, name: str) -> str:
    """`name` (relative to the working folder) spelled one of many equivalent ways."""
    form = draw(st.sampled_from([
        "{n}", "{n}", "./{n}", "{n}/", "./{n}//", "{n}/.", CWD + "/{n}", CWD + "//{n}/",
        "../cwd/{n}", "adir/../{n}", "nowhere/../{n}", "afile/../{n}", "dirlink/../{n}",
        "fulldir/./../{n}", "alias", "abs_alias"]))
    if form == "alias":
        return scene.alias(name)
    if form == "abs_alias":
        return scene.alias(f"{CWD}/{name}")
    if "afile/.." in form or "nowhere/.." in form:
        scene.tags.add("through_missing_or_file")
    return form.replace("{n}", name)


DOT_SPOTS = [".", "./", "..", "../", "../..", "adir/..", CWD, CWD + "/", "./.", "fulldir/.."]


@st.composite
def output_spot(draw, scene: Scene, base: str = "out") -> str:
    """Where a command is told to write: new, existing, of the wrong kind, or odd."""
    kind = draw(st.sampled_from(["new", "new", "new_nested", "named", "empty_dir",
                                 "full_dir", "file", "dangling", "loop", "link_empty",
                                 "link_full", "dot", "through_file", "dev_null", "existing"]))
    if kind == "new":
        return draw(spelled(scene, base))
    if kind == "new_nested":
        return draw(spelled(scene, f"new1/new2/{base}"))
    if kind == "named":
        name = draw(st.sampled_from(NAMES))
        scene.tags.add("odd_name")
        if len(name) > 255:
            scene.tags.add("long_name")
        return draw(st.sampled_from([name, f"./{name}", f"{CWD}/{name}", f"adir/{name}"]))
    if kind == "empty_dir":
        scene.put(base, ("dir", {}))
        return draw(spelled(scene, base))
    if kind == "full_dir":
        scene.put(base, ("dir", {"keep.txt": ("file", b"precious\n")}))
        return draw(spelled(scene, base))
    if kind == "file":
        scene.put(base, ("file", b"a file, not a folder\n"), "wrong_kind")
        return draw(spelled(scene, base))
    if kind == "dangling":
        scene.put(base, ("link", "missing_target"), "dangling")
        return base + draw(st.sampled_from(["", "/"]))
    if kind == "loop":
        scene.put(base, ("link", base), "link_loop")
        return base + draw(st.sampled_from(["", "/"]))
    if kind == "link_empty":
        scene.put("real_" + base, ("dir", {}))
        scene.put(base, ("link", "real_" + base), "symlink")
        return base + draw(st.sampled_from(["", "/"]))
    if kind == "link_full":
        return draw(st.sampled_from(["dirlink", "dirlink/", "filelink"]))
    if kind == "dot":
        scene.tags.add("dot_output")
        return draw(st.sampled_from(DOT_SPOTS))
    if kind == "through_file":
        scene.tags.add("through_missing_or_file")
        return draw(st.sampled_from(["afile/" + base, "filelink/" + base, "loop/" + base,
                                     "dangling/" + base]))
    if kind == "dev_null":
        return "/dev/null"
    return draw(st.sampled_from(["afile", "adir", "fulldir", "dangling", "loop", "bad.py"]))


# -------------------------------------------------------------------- file contents

@st.composite
def json_file(draw, scene: Scene, good: dict[str, Any], deep_ok: bool = True) -> tuple:
    """params.json-like content: valid, subtly wrong, or wrong in every possible way."""
    kind = draw(st.sampled_from(["good", "good", "good", "mutated", "mutated", "task",
                                 "bom", "encoding", "deep", "invalid", "wrong_type", "dup",
                                 "huge", "binary", "nan_literal"]))
    if kind == "good":
        return ("file", _utf8(json.dumps(good, indent=draw(st.sampled_from([None, 2])))))
    if kind == "mutated":
        raw = dict(good)
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(PARAM_KEYS))
            raw[key] = draw(hostile_value(key))
        scene.tags.add("bad_value")
        return ("file", _utf8(json.dumps(raw)))
    if kind == "task":
        spec = draw(st.sampled_from(TASK_SPECS))
        scene.tags.add("task_nonstr" if not isinstance(spec, str) else "task_odd")
        if spec == 5:
            scene.tags.add("task_5")
        raw = {**good, "task": spec}
        if spec is None and draw(st.booleans()):
            del raw["task"]  # no task at all
        return ("file", _utf8(json.dumps(raw)))
    if kind == "bom":
        return ("file", b"\xef\xbb\xbf" + _utf8(json.dumps(good)))
    if kind == "encoding":
        scene.tags.add("encoding")
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]))
        raw = {**good, "optimizer": "adam"} if draw(st.booleans()) else {**good, "é": "é"}
        return ("file", json.dumps(raw, ensure_ascii=False).encode(codec))
    if kind == "deep":
        scene.tags.add("deep_json")
        depth = draw(st.sampled_from([500, 990, 1000, 2000, 5000] if deep_ok else [50]))
        shape = draw(st.sampled_from(["list", "dict", "in_value", "in_key_value"]))
        return ("make", "deep_json", shape, depth, json.dumps(good))
    if kind == "invalid":
        scene.tags.add("invalid_json")
        return ("file", draw(st.sampled_from([
            b"", b"{", b'{"task":', b"{'task': 'signs'}", b'{"task": "signs",}', b"// x\n{}",
            b"{} {}", b'{"a":1}\x00', b"\n\n\n   ", b'{"task": "signs"', b"\x00\x00\x00\x00",
            b'{"task": "sig\nns"}', b'{"task": "\\ud800"}', b'{"\\u0000": 1}'])))
    if kind == "wrong_type":
        scene.tags.add("wrong_type_json")
        return ("file", draw(st.sampled_from([b"[]", b"[1, 2]", b'"signs"', b"5", b"null",
                                               b"true", b"1e400", b"NaN", b'[{"task": "signs"}]'])))
    if kind == "dup":
        scene.tags.add("dup_key")
        body = json.dumps(good)[1:-1]
        return ("file", _utf8("{" + body + ', "task": "ner"' + "}"))
    if kind == "huge":
        scene.tags.add("huge")
        return ("make", "huge_json", draw(st.sampled_from(["space", "string", "many_keys"])),
                json.dumps(good))
    if kind == "nan_literal":
        raw = {**good, draw(st.sampled_from(["learning_rate", "dropout_rate", "seed",
                                             "weight_decay"])): float("nan")}
        scene.tags.add("bad_value")
        return ("file", _utf8(json.dumps(raw)))
    scene.tags.add("binary")
    return ("file", draw(st.binary(max_size=200)))


@st.composite
def params_entry(draw, scene: Scene, good: dict[str, Any]) -> tuple:
    """params.json as a file of any content, or something that is not a file at all."""
    kind = draw(st.sampled_from(["content"] * 8 + ["folder", "dangling", "loop", "link"]))
    if kind == "content":
        return draw(json_file(scene, good))
    if kind == "folder":
        scene.tags.add("params_folder")
        return ("dir", {})
    if kind == "dangling":
        scene.tags.add("params_dangling")
        return ("link", "no_such_params.json")
    if kind == "loop":
        scene.tags.add("params_loop")
        return ("link", "params.json")
    scene.tags.add("symlink")
    return ("link", f"{CWD}/../../params_elsewhere.json")


def _run_json_contents():
    return st.sampled_from([
        ("file", b""), ("file", b"{"), ("file", b"[]"), ("file", b"5"), ("file", b'"x"'),
        ("file", b"\xff\xfe\x00\x01"), ("file", b'[{"epoch": "x"}]'), ("file", b'[1, null]'),
        ("file", b'{"status": 5, "error": []}'), ("file", b'{"epoch": 1e400}'),
        ("file", b'{"accuracy": "NaN", "loss": NaN, "epoch": true}'),
        ("file", '{"accuracy": 0.5}'.encode("utf-16")),
        ("file", b'[{"epoch": 1, "val_accuracy": NaN, "train_loss": Infinity}]'),
        ("make", "deep_json", "list", 3000, "{}"), ("make", "deep_json", "dict", 5000, "{}"),
        ("make", "deep_json", "list", 990, "{}"),
        ("dir", {}), ("link", "nowhere"), ("link", "history.json"),
    ])


RUN_FILES = ["history.json", "run.json", "resolved_params.json", "metrics_val_best_weights.json",
             "metrics_val_last_weights.json", "metrics_test_best.json", "train.log",
             "learning_curve.png", "tensorboard", "previous_runs"]


@st.composite
def checkpoint_entry(draw, scene: Scene, task: str) -> tuple:
    other = "ner" if task == "signs" else "signs"
    kind = draw(st.sampled_from(["good", "other_task", "truncated", "flipped", "empty",
                                 "junk", "zip_junk", "partial", "plain_tensor", "pickle_code",
                                 "folder", "dangling", "loop", "text"]))
    scene.tags.add(f"ckpt_{kind}")
    if kind == "good":
        return ("copy", f"exp_{task}/best.pt")
    if kind == "other_task":
        return ("copy", f"exp_{other}/best.pt")
    if kind == "truncated":
        return ("make", "truncated", f"exp_{task}/best.pt",
                draw(st.sampled_from([1, 10, 100, 1000, 0.5, 0.99, -1])))
    if kind == "flipped":
        return ("make", "flipped", f"exp_{task}/best.pt", draw(st.sampled_from([0.3, 0.6, 0.9])))
    if kind == "empty":
        return ("file", b"")
    if kind == "junk":
        return ("file", draw(st.binary(min_size=1, max_size=300)))
    if kind == "zip_junk":
        return ("make", "zip", "junk")
    if kind == "partial":
        return ("make", "partial_ckpt", task, draw(st.sampled_from(
            ["format_only", "params_int", "no_model", "model_junk", "epoch_str",
             "task_int", "data_info_junk"])))
    if kind == "plain_tensor":
        return ("make", "plain_tensor")
    if kind == "pickle_code":
        return ("make", "pickle_code")
    if kind == "folder":
        return ("dir", {})
    if kind == "dangling":
        return ("link", "gone.pt")
    if kind == "loop":
        return ("link", "LOOPSELF")
    return ("file", b"not a checkpoint\n")


IMAGE_KINDS = ["good", "good", "good_png", "tiny", "gray", "cmyk", "rgba", "palette", "gif",
               "webp", "png16", "png16_rgb", "bomb_error", "bomb_warning", "big", "truncated",
               "text", "empty", "junk", "svg", "exif_bad", "wrong_size_png"]


@st.composite
def image_entry(draw, scene: Scene) -> tuple:
    kind = draw(st.sampled_from(IMAGE_KINDS + ["folder", "dangling", "loop"]))
    scene.tags.add(f"img_{kind}")
    if kind.startswith("png16"):
        scene.tags.add("png16")
    if kind.startswith("bomb"):
        scene.tags.add("bomb")
    if kind == "folder":
        return ("dir", {"0_IMG_1.jpg": ("copy", "image")})
    if kind == "dangling":
        return ("link", "no_image.jpg")
    if kind == "loop":
        return ("link", "LOOPSELF")
    if kind == "junk":
        return ("file", draw(st.binary(max_size=200)))
    return ("make", "image", kind)


IMAGE_NAMES = ["0_IMG_1.jpg", "5_IMG_x.png", "3_IMG_2.JPEG", "6_IMG_1.jpg", "9_IMG_9.jpg",
               "x_IMG.jpg", "0IMG.jpg", "²_IMG_1.jpg", "٣_IMG_2.jpg", "00_IMG_3.jpg",
               "-1_IMG_4.jpg", "1_\n_IMG.jpg", "2_IMG_\udcff.jpg", "4_IMG_ünï.png",
               "1_IMG_" + "x" * 240 + ".jpg", ".0_IMG_hidden.jpg", "0_IMG_sp ace.jpg",
               "99999999999999999999_IMG.jpg", "0_IMG_1.jpg.tmp"]


# --------------------------------------------------------------- content makers (lazy)

def _deep_json(shape: str, depth: int, good: str) -> bytes:
    if shape == "list":
        return ("[" * depth + "]" * depth).encode()
    if shape == "dict":
        return ('{"a":' * depth + "1" + "}" * depth).encode()
    inner = "[" * depth + "]" * depth
    key = "learning_rate" if shape == "in_value" else "zz_unknown"
    return (good[:-1] + f', "{key}": {inner}' + "}").encode()


def _huge_json(kind: str, good: str) -> bytes:
    if kind == "space":
        return (good + " " * (3 << 20)).encode()
    if kind == "string":
        return (good[:-1] + ', "notes": "' + "x" * (2 << 20) + '"}').encode()
    keys = ", ".join(f'"k{i}": {i}' for i in range(100_000))
    return (good[:-1] + ", " + keys + "}").encode()


def _png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = zlib.compress(rows if rows is not None else b"\x00" * 64, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


def _image(assets: dict[str, Path], kind: str) -> bytes:
    from PIL import Image

    def save(img: Image.Image, fmt: str, **kw: Any) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    good = (assets["image"]).read_bytes()
    if kind == "good":
        return good
    if kind == "good_png":
        return save(Image.open(io.BytesIO(good)), "PNG")
    if kind == "tiny":
        return save(Image.new("RGB", (1, 1), "red"), "PNG")
    if kind == "gray":
        return save(Image.new("L", (64, 64), 128), "JPEG")
    if kind == "cmyk":
        return save(Image.new("CMYK", (64, 64), (0, 50, 100, 0)), "JPEG")
    if kind == "rgba":
        return save(Image.new("RGBA", (64, 64), (1, 2, 3, 0)), "PNG")
    if kind == "palette":
        img = Image.new("P", (64, 64), 3)
        return save(img, "PNG", transparency=3)
    if kind == "gif":
        frames = [Image.new("P", (64, 64), i) for i in range(3)]
        return save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    if kind == "webp":
        return save(Image.new("RGB", (64, 64), "blue"), "WEBP")
    if kind == "png16":
        return save(Image.new("I;16", (64, 64), 40000), "PNG")
    if kind == "png16_rgb":
        row = b"\x00" + b"\xff\x00" * 3 * 64
        return _png(64, 64, 16, 2, row * 64)
    if kind == "bomb_error":  # 400 megapixels: Pillow refuses to open it
        return _png(20000, 20000, 1, 0, None)
    if kind == "bomb_warning":  # 100 megapixels: Pillow warns, then the data is short
        return _png(10000, 10000, 1, 0, None)
    if kind == "big":  # 16 megapixels of real (compressible) data: legitimate, just big
        return _png(4000, 4000, 1, 0, (b"\x00" + b"\x55" * 500) * 4000)
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "text":
        return b"this is not an image\n"
    if kind == "empty":
        return b""
    if kind == "svg":
        return b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>'
    if kind == "exif_bad":
        img = Image.open(io.BytesIO(good))
        exif = Image.Exif()
        exif[0x0112] = 9  # orientation out of range
        return save(img.convert("RGB"), "JPEG", exif=exif.tobytes())
    if kind == "wrong_size_png":
        return save(Image.new("RGB", (32, 48), "green"), "PNG")
    raise AssertionError(kind)


def _partial_ckpt(assets: dict[str, Path], task: str, kind: str) -> bytes:
    from torchstarter.engine.checkpoint import FORMAT

    state = torch.load(assets[f"exp_{task}"] / "best.pt", weights_only=True)
    changes = {"format_only": None, "params_int": {"params": 5}, "no_model": {"model": None},
               "model_junk": {"model": {"x": torch.zeros(2)}}, "epoch_str": {"epoch": "x"},
               "task_int": {"task": 5}, "data_info_junk": {"data_info": {"words": 5}}}[kind]
    if changes is None:
        state = {"format": FORMAT}
    else:
        state.update(changes)
        if changes.get("model", 0) is None:
            del state["model"]
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _zip(assets: dict[str, Path], kind: str) -> bytes:
    buf = io.BytesIO()
    csv_bytes = (assets["raw_ner"] / "ner_dataset.csv").read_bytes()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if kind == "junk":
            zf.writestr("data.pkl", b"junk")
        elif kind == "good":
            zf.writestr("ner_dataset.csv", csv_bytes)
        elif kind == "two":
            zf.writestr("a.csv", csv_bytes)
            zf.writestr("b.csv", csv_bytes)
        elif kind == "none":
            zf.writestr("readme.txt", b"hi")
        elif kind == "dir_entry":
            zf.writestr("sub/", b"")
            zf.writestr("sub/ner_dataset.csv", csv_bytes)
        elif kind == "odd_name":
            zf.writestr("dätä\n.csv", csv_bytes)
        elif kind == "utf16":
            zf.writestr("ner_dataset.csv", csv_bytes.decode("cp1252").encode("utf-16"))
    data = buf.getvalue()
    if kind == "truncated":
        return _zip(assets, "good")[:600]
    if kind == "bad_crc":
        good = bytearray(_zip(assets, "good"))
        good[len(good) // 3] ^= 0xFF
        return bytes(good)
    return data


def _ner_csv(assets: dict[str, Path], kind: str) -> bytes:
    data = (assets["raw_ner"] / "ner_dataset.csv").read_bytes()
    text = data.decode("cp1252")
    if kind == "good":
        return data
    if kind in ("utf-16", "utf-16-le", "utf-32", "utf-8-sig", "utf-8"):
        return (text + "1,é,X,O\n" if kind == "utf-8" else text).encode(kind)
    if kind == "latin1_extra":
        return data + "Sentence: 999,Ürümqi,NNP,B-geo\n".encode("cp1252")
    if kind == "mixed":
        return (data + "Sentence: 998,Zürich,NNP,B-geo\n".encode()
                + b"Sentence: 997,\xe9,X,O\n")
    if kind == "header_only":
        return text.splitlines()[0].encode() + b"\n"
    if kind == "blank_rows":
        return text.splitlines()[0].encode() + b"\n,,,\n,,,\n"
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "cut_quote":
        return data + b'Sentence: 996,"unclosed,X,O\n'
    if kind == "nul":
        return data[:500] + b"\x00" + data[500:]
    if kind == "big":
        body = text.split("\n", 1)[1]
        return (text + body * 60).encode("cp1252")
    if kind == "no_marker":
        return b"Sentence #,Word,POS,Tag\n,John,NNP,B-per\n"
    if kind == "cr_only":
        return data.replace(b"\n", b"\r")
    raise AssertionError(kind)


def _conll(assets: dict[str, Path], kind: str) -> bytes:
    base = "John B-per\nsaid O\nhello O\n\nMary B-per\nwent O\n.\tO\n\n-DOCSTART- -X- O\n\n"
    many = "".join(f"w{i} O\nx{i} B-geo\n\n" for i in range(30))
    text = {"good": base + many, "one_column": base + "lonely\n" + many,
            "unicode": base + "Zürich B-geo\n日本 B-gpe\n😀 O\n\n" + many,
            "long_token": base + "y" * 20000 + " O\n\n" + many,
            "tags_odd": base + "a B-\nb I-\nc X-Y-Z\n\n" + many,
            "only_docstart": "-DOCSTART- -X- O\n\n", "blank": "\n\n\n",
            "crlf": (base + many).replace("\n", "\r\n"),
            "tabs": (base + many).replace(" ", "\t")}[kind]
    return text.encode("utf-8")


def _split_file(assets: dict[str, Path], name: str, kind: str) -> bytes:
    data = (assets["data_ner"] / name).read_bytes()
    if kind == "utf16":
        return data.decode("utf-8").encode("utf-16")
    if kind == "latin1":
        return data + "Ürümqi\n".encode("latin-1")
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "drop_line":
        return b"\n".join(data.split(b"\n")[1:])
    if kind == "extra_token":
        return data.replace(b"\n", b" extra\n", 1)
    if kind == "empty_line":
        return b"\n" + data
    if kind == "empty":
        return b""
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    if kind == "nul":
        return data.replace(b" ", b"\x00", 1)
    if kind == "no_pad":
        return data.replace(b"<pad>\n", b"", 1)
    if kind == "dup_words":
        return data + data
    if kind == "bad_tags":
        return b"O\nB-x\nI-\nfoo\n"
    raise AssertionError(kind)


def _make(assets: dict[str, Path], entry: tuple) -> bytes:
    key, args = entry[1], entry[2:]
    if key == "deep_json":
        return _deep_json(*args)
    if key == "huge_json":
        return _huge_json(args[0], args[1])
    if key == "truncated":
        data = (assets[args[0].split("/")[0]] / args[0].split("/", 1)[1]).read_bytes()
        cut = args[1]
        n = (int(len(data) * cut) if isinstance(cut, float)
             else len(data) - 1 if cut == -1 else cut)
        return data[:n]
    if key == "flipped":
        data = bytearray((assets[args[0].split("/")[0]] / args[0].split("/", 1)[1]).read_bytes())
        data[int(len(data) * args[1])] ^= 0x5A
        return bytes(data)
    if key == "partial_ckpt":
        return _partial_ckpt(assets, *args)
    if key == "plain_tensor":
        buf = io.BytesIO()
        torch.save(torch.zeros(3), buf)
        return buf.getvalue()
    if key == "pickle_code":
        buf = io.BytesIO()
        torch.save({"format": "torchstarter-checkpoint-1", "x": _Evil()}, buf)
        return buf.getvalue()
    if key == "zip":
        return _zip(assets, args[0])
    if key == "image":
        return _image(assets, args[0])
    if key == "ner_csv":
        return _ner_csv(assets, args[0])
    if key == "conll":
        return _conll(assets, args[0])
    if key == "split_file":
        return _split_file(assets, args[0], args[1])
    raise AssertionError(key)


class _Evil:
    """Pickles as a call to os.getcwd: code a weights_only load must refuse."""

    def __reduce__(self):
        return (os.getcwd, ())


# ------------------------------------------------------------------- sandbox & running

def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _lay_out(path: Path, entry: tuple, assets: dict[str, Path], cwd: Path) -> None:
    with contextlib.suppress(OSError):
        _remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = entry[0]
    if kind == "file":
        path.write_bytes(entry[1])
    elif kind == "make":
        path.write_bytes(_make(assets, entry))
    elif kind == "dir":
        path.mkdir()
        for name, sub in entry[1].items():
            _lay_out(path / name, sub, assets, cwd)
    elif kind == "copy":
        top, _, rest = entry[1].partition("/")
        source = assets[top] / rest if rest else assets[top]
        if source.is_dir():
            shutil.copytree(source, path, symlinks=True)
        else:
            shutil.copyfile(source, path)
    elif kind == "link":
        target = entry[1].replace(CWD, str(cwd))
        os.symlink(path.name if target == "LOOPSELF" else target, path)
    else:
        raise AssertionError(entry)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: kind, and for files size, mtime (ns) and content hash."""
    found: dict[str, tuple] = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir",)
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as fh:
                    digest = hashlib.file_digest(fh, "sha256").hexdigest()
                found[rel] = ("file", info.st_size, info.st_mtime_ns, digest)
            else:
                found[rel] = ("other", stat.S_IFMT(info.st_mode))
    return found


class FuzzTimeout(BaseException):
    """Raised inside the command when it runs past TORCHSTARTER_FUZZ_TIMEOUT."""


@dataclass
class Result:
    code: int
    out: str
    err: str
    warnings: list[str]


def run_cli(argv: list[str], cwd: Path, stdin: bytes) -> Result:
    """main(argv) in cwd, as a process would: UTF-8 streams, warnings shown as Python shows
    them by default, an uncaught exception printed as a traceback with exit code 1."""
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace",
                           write_through=True)
    inp = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8", errors="strict")
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_cwd, saved_path = os.getcwd(), list(sys.path)
    saved_threads = torch.get_num_threads()
    root_logger = logging.getLogger()
    saved_handlers = list(root_logger.handlers)
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_alarm(signum: int, frame: Any) -> None:
        raise FuzzTimeout(f"still running after {TIMEOUT:.0f}s")

    saved_alarm = signal.signal(signal.SIGALRM, on_alarm)
    code: Any = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # what a fresh interpreter shows (no -W flags)
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                         ResourceWarning):
            warnings.filterwarnings("ignore", category=category)
        try:
            os.chdir(cwd)
            sys.stdin, sys.stdout, sys.stderr = inp, out, err
            root_logger.handlers = []  # logging's last resort then prints to our stderr
            signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code
                if code is None:
                    code = 0
                elif not isinstance(code, int):
                    print(code, file=err)
                    code = 1
            except FuzzTimeout:
                err.write("hang: " + traceback.format_exc())
                code = "hang"
            except BaseException:  # noqa: BLE001 - this is what the interpreter would print
                err.write(traceback.format_exc())
                code = 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, saved_alarm)
            for signum, handler in saved_signals.items():
                signal.signal(signum, handler)
            with contextlib.suppress(Exception):
                out.flush()
                err.flush()
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            root_logger.handlers = saved_handlers
            os.chdir(saved_cwd)
            sys.path[:] = saved_path
            torch.set_num_threads(saved_threads)
    shown = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught]
    return Result(code, out_bytes.getvalue().decode("utf-8", "replace"),
                  err_bytes.getvalue().decode("utf-8", "replace"), shown)


def declared_outputs(argv: list[str]) -> list[str]:
    """What the command line names as output (patterns allowed); [] when argparse refuses."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            build_task = _task_in(argv, "signs") if "build-dataset" in argv else None
            vocab_task = _task_in(argv, "ner") if "build-vocab" in argv else None
            args = build_parser(build_task, vocab_task).parse_args(argv)
    except (SystemExit, Exception):  # noqa: BLE001 - refused before anything ran
        return []
    command = args.command
    if command in ("build-dataset", "sample-data"):
        return [str(args.output_dir)]
    if command == "build-vocab":
        return [str(args.data_dir)]
    if command in ("train", "evaluate"):
        return [str(args.model_dir)]
    if command == "demo":
        return [str(args.output_dir) if args.output_dir is not None else "demo-runs"]
    if command == "new":
        return [str(args.dir)]
    if command == "synthesize":
        parent = str(args.parent_dir)
        return [os.path.join(parent, "results.md"), os.path.join(parent, "results.csv"),
                GLOB + os.path.join(parent, "search_*.png"),
                os.path.join(parent, "learning_curves.png")]
    if command == "search":
        outs = [str(args.parent_dir)]
        storage = args.storage
        if storage:
            if storage.startswith("sqlite:///"):  # the database and its journal files
                outs.append(GLOB + glob_escape(storage[len("sqlite:///"):]) + "*")
            elif "://" not in storage:  # the journal and its lock file
                outs.append(GLOB + glob_escape(storage) + "*")
        return outs
    return []  # predict, --help, --version


GLOB = "glob:"  # marks a declared output that is a pattern


def glob_escape(path: str) -> str:
    return re.sub(r"([*?[])", r"[\1]", path)


def _candidates(output: str, cwd: Path) -> set[str]:
    """The output's path as the OS may take it: normalised, resolved, parent resolved."""
    if output.startswith(GLOB):  # the folder as written and as the OS resolves it
        pattern = output[len(GLOB):]
        folder, name = os.path.split(os.path.join(str(cwd), pattern))
        found = {GLOB + os.path.join(glob_escape(str(cwd)), pattern)}
        with contextlib.suppress(OSError):
            found.add(GLOB + os.path.join(glob_escape(os.path.realpath(folder)), name))
        return found
    full = os.path.join(str(cwd), output)
    head, tail = os.path.split(os.path.normpath(full))
    found = {os.path.normpath(full), os.path.realpath(full)}
    with contextlib.suppress(OSError):
        found.add(os.path.join(os.path.realpath(head), tail))
    return found


def _is_parent_of(folder: str, output: str, cwd: Path) -> bool:
    """Whether `folder` is one of the folders the output's path passes through, as
    written (`mkdir -p nowhere/../out` creates nowhere/) or normalised."""
    literal = re.sub(r"/+", "/", os.path.join(str(cwd), output))
    return any(spot.startswith(folder + "/")
               for spot in (literal, *_candidates(output, cwd)))


def outside_changes(before: dict[str, tuple], after: dict[str, tuple], root: Path, cwd: Path,
                    outputs: list[str]) -> list[str]:
    allowed = set().union(*(_candidates(o, cwd) for o in outputs)) if outputs else set()
    problems = []
    for rel in sorted(set(before) | set(after)):
        old, new = before.get(rel), after.get(rel)
        if old == new:
            continue
        path = os.path.join(str(root), rel)
        ok = old is None and new == ("dir",) and any(  # a new parent folder of an output
            _is_parent_of(path, o, cwd) for o in outputs if not o.startswith(GLOB))
        for spot in allowed:
            if ok:
                break
            if spot.startswith(GLOB):
                ok = fnmatchcase(path, spot[len(GLOB):])
            else:
                ok = path == spot or path.startswith(spot.rstrip("/") + "/")
        if not ok:
            what = "added" if old is None else "removed" if new is None else "changed"
            problems.append(f"{what} outside the declared output: {rel!r}")
    return problems


TEMP_NAME = re.compile(r"^\..*(\.tmp|\.new|\.old|\.link|\.[0-9a-f]{8})$|^\..+\.[0-9a-f]{8}\.")


def leftovers(before: dict[str, tuple], after: dict[str, tuple], root: Path, cwd: Path,
              outputs: list[str]) -> list[str]:
    named = set().union(*(_candidates(o, cwd) for o in outputs)) if outputs else set()
    left = []
    for rel in sorted(set(after) - set(before)):
        name = os.path.basename(rel)
        if os.path.join(str(root), rel) in named:
            continue  # the output itself, which the user may have named ".hidden" or "..."
        if name.startswith(".") and name not in ALLOWED_HIDDEN:
            kind = "temp file" if TEMP_NAME.search(name) else "hidden file"
            left.append(f"{kind} left behind: {rel!r}")
    return left


WARNING_LINE = re.compile(r"^.*:\d+: \w*Warning: ", re.MULTILINE)


def check(result: Result, command: str) -> list[str]:
    problems = []
    code = result.code
    err = result.err
    if code not in (0, 2):
        documented = (command == "search" and code == 1 and "Traceback" not in err)
        if not documented:  # search: 1 = some trial failed (its own documented code)
            problems.append(f"exit code {code}")
    if "Traceback" in err:
        problems.append("traceback on stderr")
    if result.warnings:
        problems.append("Python warning: " + result.warnings[0])
    if WARNING_LINE.search(err):
        problems.append("warning line on stderr")
    if code == 2:
        lines = err.rstrip("\n").split("\n")
        if len(lines) != 1 or not lines[0].startswith("error: "):
            problems.append(f"exit 2 with {len(lines)} stderr lines, not one 'error: ' line")
    return problems


# ------------------------------------------------------------ failures and their groups

KNOWN = [  # (group, how to recognise it) for defects others are fixing now
    ("K1 build-dataset --output-dir . ./ .. (empty name)",
     lambda c, r: "empty name" in r.err),
    ("K2 decompression-bomb image",
     lambda c, r: "DecompressionBomb" in r.err + "".join(r.warnings)),
    ("K3 16-bit PNG", lambda c, r: "png16" in c.tags),
    ("K4 NER predict BOM/stdin", lambda c, r: c.argv[:1] == ["predict"] and
     ("ner_bom" in c.tags or "ner_stdin" in c.tags) and ("UnicodeDecodeError" in r.err
                                                        or "\ufeff" in r.out)),
    ("K5 search --storage <folder>", lambda c, r: "IsADirectoryError" in r.err and
     c.argv[:1] == ["search"]),
    ("K6 deep JSON RecursionError", lambda c, r: "RecursionError" in r.err),
    ("K7 argparse error prints usage", lambda c, r: r.code == 2 and "usage:" in r.err),
    ('K8 "task": 5', lambda c, r: "task_nonstr" in c.tags and "task" in r.err.lower()),
    ("K9 params.json is a folder / dangling link", lambda c, r: (
        "params_folder" in c.tags or "params_dangling" in c.tags or "params_loop" in c.tags)
     and ("params.json" in r.err or "IsADirectoryError" in r.err)),
    ("K10 --set k=1 --set k=2", lambda c, r: "dup_set" in c.tags and "--set" in r.err),
]


def known_group(case: Case, result: Result) -> str | None:
    for group, test in KNOWN:
        with contextlib.suppress(Exception):
            if test(case, result):
                return group
    return None


def _normalise(line: str) -> str:
    line = re.sub(r"/tmp/\S+|'[^']*'|\"[^\"]*\"", "…", line)
    return re.sub(r"\d+", "N", line)[:160]


def signature(case: Case, result: Result, problems: list[str]) -> str:
    err = result.err.strip().splitlines()
    key = ""
    if "Traceback" in result.err:
        frames = re.findall(r'File "([^"]*torchstarter[^"]*)", line (\d+), in (\S+)', result.err)
        where = f"{Path(frames[-1][0]).name}:{frames[-1][2]}" if frames else "?"
        key = f"{_normalise(err[-1]) if err else ''} @ {where}"
    elif problems and problems[0].startswith("exit 2 with"):
        key = _normalise(err[0] if err else "")
    elif err:
        key = _normalise(err[-1])
    kinds = sorted({re.sub(r"[:(].*", "", p).strip() for p in problems})
    return f"{case.argv[0] if case.argv else ''} | exit {result.code} | {'; '.join(kinds)} | {key}"


_FAILURE_TYPES: dict[str, type] = {}


def _failure_type(problem: str) -> type:
    """One exception class per kind of problem, so hypothesis reports each kind apart."""
    name = "Fuzz_" + re.sub(r"\W+", "_", re.sub(r"[:(].*", "", problem)).strip("_")[:60]
    if name not in _FAILURE_TYPES:
        _FAILURE_TYPES[name] = type(name, (AssertionError,), {})
    return _FAILURE_TYPES[name]


def run_case(case: Case, assets: dict[str, Path], test_name: str) -> Result:
    root = Path(os.path.realpath(tempfile.mkdtemp(prefix="tsfuzz-")))
    try:
        cwd = root / "up" / "cwd"
        cwd.mkdir(parents=True)
        (root / "params_elsewhere.json").write_text(json.dumps(SIGNS_TINY))
        for rel, entry in case.files.items():
            _lay_out(cwd / rel, entry, assets, cwd)
        before = snapshot(root)
        argv = [a.replace(CWD, str(cwd)) for a in case.argv]
        outputs = declared_outputs(argv)
        result = run_cli(argv, cwd, case.stdin)
        after = snapshot(root)
        command = case.argv[0] if case.argv else ""
        problems = check(result, command)
        problems += outside_changes(before, after, root, cwd, outputs)
        problems += leftovers(before, after, root, cwd, outputs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    event(f"{command or '-'}: exit {result.code}")
    if result.code == 2:
        first = result.err.strip().splitlines()[:1]
        text = _normalise(first[0])[7:47] if first else "(none)"
        event("error: " + text.encode("utf-8", "backslashreplace").decode("utf-8"))
    if problems:
        group = known_group(case, result)
        event("FAILED" + (f" ({group.split()[0]})" if group else " (new)"))
        err_lines = result.err.strip().splitlines()
        text = (f"{case.describe()}\n  exit code: {result.code}\n  problems: {problems}\n"
                f"  known group: {group or 'NEW'}\n  stderr:\n    "
                + "\n    ".join(err_lines[:4] + (["..."] + err_lines[-3:]
                                                 if len(err_lines) > 7 else err_lines[4:7])))
        if RECORD:
            with open(RECORD, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({
                    "test": test_name, "signature": signature(case, result, problems),
                    "known": group, "argv": case.argv, "describe": case.describe(),
                    "exit": result.code, "problems": problems, "tags": sorted(case.tags),
                    "stderr_head": err_lines[:6], "stderr_tail": err_lines[-4:],
                    "warnings": result.warnings[:3]}) + "\n")
        else:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
            note(text)
            raise _failure_type(problems[0])(text)
    return result


# ---------------------------------------------------------------------------- assets

def _quiet(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    assert code == 0, argv


@pytest.fixture(scope="session")
def assets(sample_raw: Path, tmp_path_factory) -> dict[str, Path]:
    """Small built inputs every case copies from: raw and built data, trained experiments."""
    base = tmp_path_factory.mktemp("fuzz_assets")
    raw = base / "raw_signs"
    for split, per_label in (("train_signs", 4), ("test_signs", 2)):
        (raw / split).mkdir(parents=True)
        taken: dict[str, int] = {}
        for image in sorted((sample_raw / split).iterdir()):
            label = image.name.split("_", 1)[0]
            if taken.get(label, 0) < per_label:
                taken[label] = taken.get(label, 0) + 1
                shutil.copyfile(image, raw / split / image.name)
    _quiet(["build-dataset", "--data-dir", str(raw), "--output-dir", str(base / "data_signs")])
    _quiet(["sample-data", "--task", "ner", "--output-dir", str(base / "raw_ner")])
    _quiet(["build-dataset", "--task", "ner", "--data-dir", str(base / "raw_ner"),
            "--output-dir", str(base / "data_ner")])
    _quiet(["build-vocab", "--data-dir", str(base / "data_ner")])
    for task, data in (("signs", "data_signs"), ("ner", "data_ner")):
        exp = base / f"exp_{task}"
        exp.mkdir()
        (exp / "params.json").write_text(json.dumps(GOOD_PARAMS[task]))
        _quiet(["train", "--model-dir", str(exp), "--data-dir", str(base / data),
                "--no-tensorboard"])
        _quiet(["evaluate", "--model-dir", str(exp), "--data-dir", str(base / data)])
    image = sorted((base / "data_signs" / "test_signs").iterdir())[0]
    return {"raw_signs": raw, "data_signs": base / "data_signs", "raw_ner": base / "raw_ner",
            "data_ner": base / "data_ner", "exp_signs": base / "exp_signs",
            "exp_ner": base / "exp_ner", "image": image}


# ------------------------------------------------------------------ scene strategies

@st.composite
def signs_raw_scene(draw, scene: Scene, name: str = "raw") -> str:
    """Raw SIGNS data (tiny, real) with hostile images, folders or layout; its path."""
    kind = draw(st.sampled_from(["good", "good", "images", "images", "no_test", "split_file",
                                 "empty", "is_file", "missing", "ner_raw", "link"]))
    if kind in ("good", "images", "no_test", "split_file", "link"):
        scene.put(name, ("copy", "raw_signs"))
    if kind == "images":
        for _ in range(draw(st.integers(1, 3))):
            split = draw(st.sampled_from(["train_signs", "test_signs"]))
            scene.put(f"{name}/{split}/{draw(st.sampled_from(IMAGE_NAMES))}",
                      draw(image_entry(scene)))
    elif kind == "no_test":
        scene.put(f"{name}/test_signs", ("dir", {}), "wrong_layout")
    elif kind == "split_file":
        scene.put(f"{name}/{draw(st.sampled_from(['train_signs', 'test_signs']))}",
                  draw(st.sampled_from([("file", b"x"), ("link", "nowhere"), ("link", "..")])),
                  "wrong_layout")
    elif kind == "empty":
        scene.put(name, ("dir", {}))
    elif kind == "is_file":
        scene.put(name, ("file", b"raw"), "wrong_kind")
    elif kind == "ner_raw":
        scene.put(name, ("copy", "raw_ner"), "wrong_task_data")
    elif kind == "link":
        return scene.alias(name)
    return draw(spelled(scene, name))


@st.composite
def ner_raw_scene(draw, scene: Scene, name: str = "nraw") -> str:
    """A NER corpus (file, zip or folder) of any encoding and shape; its path."""
    kind = draw(st.sampled_from(["csv", "csv", "csv_bad", "zip", "conll", "folder_two",
                                 "folder_none", "readme_only", "missing", "signs_raw"]))
    if kind == "csv":
        fname = draw(st.sampled_from(["ner_dataset.csv", "corpus.csv", "x.txt"]))
        scene.put(f"{name}/{fname}", ("make", "ner_csv", "good"))
        return draw(st.sampled_from([name, f"{name}/{fname}"]))
    if kind == "csv_bad":
        variant = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-8-sig", "utf-8",
                                        "latin1_extra", "mixed", "header_only", "blank_rows",
                                        "truncated", "cut_quote", "nul", "big", "no_marker",
                                        "cr_only"]))
        scene.put(f"{name}/ner_dataset.csv", ("make", "ner_csv", variant), f"csv_{variant}")
        return draw(st.sampled_from([name, f"{name}/ner_dataset.csv"]))
    if kind == "zip":
        variant = draw(st.sampled_from(["good", "junk", "two", "none", "dir_entry", "odd_name",
                                        "utf16", "truncated", "bad_crc"]))
        fname = draw(st.sampled_from(["ner_dataset.csv.zip", "ner_dataset.csv", "c.zip"]))
        scene.put(f"{name}/{fname}", ("make", "zip", variant), f"zip_{variant}")
        return draw(st.sampled_from([name, f"{name}/{fname}"]))
    if kind == "conll":
        variant = draw(st.sampled_from(["good", "one_column", "unicode", "long_token",
                                        "tags_odd", "only_docstart", "blank", "crlf", "tabs"]))
        fname = draw(st.sampled_from(["corpus.conll", "c.txt", "c.csv"]))
        content = ("make", "conll", variant)
        if draw(st.integers(0, 3)) == 0:
            codec = draw(st.sampled_from(["utf-16", "latin-1"]))
            content = ("file", _conll({}, variant).decode("utf-8").encode(codec, "replace"))
            scene.tags.add("encoding")
        scene.put(f"{name}/{fname}", content, f"conll_{variant}")
        return draw(st.sampled_from([name, f"{name}/{fname}"]))
    if kind == "folder_two":
        scene.put(f"{name}/a.conll", ("make", "conll", "good"))
        scene.put(f"{name}/b.txt", ("make", "conll", "good"))
        return name
    if kind == "folder_none":
        scene.put(f"{name}/notes.md", ("file", b"hi"))
        scene.put(f"{name}/sub", ("dir", {"x.csv": ("make", "ner_csv", "good")}))
        return name
    if kind == "readme_only":
        scene.put(f"{name}/README.txt", ("file", b"read me"))
        return name
    if kind == "signs_raw":
        scene.put(name, ("copy", "raw_signs"), "wrong_task_data")
        return name
    return draw(st.sampled_from(["missing_corpus", "afile", "loop", "dangling", "/dev/null"]))


@st.composite
def data_scene(draw, scene: Scene, task: str, name: str = "data") -> str:
    """Built data for `task`, intact or damaged, or the other task's; its path."""
    kind = draw(st.sampled_from(["good"] * 5 + ["damaged", "damaged", "other_task", "missing",
                                                "empty", "file"]))
    if kind in ("good", "damaged"):
        scene.put(name, ("copy", f"data_{task}"))
    if kind == "damaged":
        if task == "signs":
            split = draw(st.sampled_from(["train_signs", "val_signs", "test_signs"]))
            what = draw(st.sampled_from(["image", "image", "gone", "file"]))
            if what == "image":
                scene.put(f"{name}/{split}/{draw(st.sampled_from(IMAGE_NAMES))}",
                          draw(image_entry(scene)))
            elif what == "gone":
                scene.put(f"{name}/{split}", ("dir", {}), "wrong_layout")
            else:
                scene.put(f"{name}/{split}", ("file", b"x"), "wrong_layout")
        else:
            target = draw(st.sampled_from(["train/sentences.txt", "train/labels.txt",
                                           "val/labels.txt", "words.txt", "tags.txt",
                                           "dataset_params.json", "test", "val"]))
            if target in ("test", "val"):
                scene.put(f"{name}/{target}", draw(st.sampled_from(
                    [("dir", {}), ("file", b"x"), ("link", "nowhere")])), "wrong_layout")
            elif target == "dataset_params.json":
                scene.put(f"{name}/{target}", draw(json_file(scene, {"lowercase": False})))
            else:
                variant = draw(st.sampled_from(
                    ["utf16", "latin1", "bom", "drop_line", "extra_token", "empty_line",
                     "empty", "crlf", "nul", "no_pad", "dup_words", "bad_tags", "folder"]))
                if variant == "folder":
                    scene.put(f"{name}/{target}", ("dir", {}), "wrong_kind")
                else:
                    scene.put(f"{name}/{target}", ("make", "split_file", target, variant),
                              f"split_{variant}")
    elif kind == "other_task":
        scene.put(name, ("copy", f"data_{'ner' if task == 'signs' else 'signs'}"),
                  "wrong_task_data")
    elif kind == "empty":
        scene.put(name, ("dir", {}))
    elif kind == "file":
        scene.put(name, ("file", b"data"), "wrong_kind")
    elif kind == "missing":
        return draw(st.sampled_from(["no_data", "dangling", "loop", "afile/x", "/dev/null"]))
    return draw(spelled(scene, name))


@st.composite
def model_dir_scene(draw, scene: Scene, task: str, trained: bool, name: str = "exp") -> str:
    """An experiment folder (trained or not) with hostile params and run files; its path."""
    kind = draw(st.sampled_from(["normal"] * 8 + ["missing", "file", "dot", "dangling"]))
    if kind == "missing":
        return draw(st.sampled_from(["no_exp", "no_exp/", "afile/exp"]))
    if kind == "file":
        scene.put(name, ("file", b"{}"), "wrong_kind")
        return name
    if kind == "dangling":
        scene.put(name, ("link", "gone_exp"), "dangling")
        return name
    if kind == "dot":  # the experiment is the working folder itself
        scene.put("params.json", draw(params_entry(scene, GOOD_PARAMS[task])))
        return draw(st.sampled_from([".", "./", CWD]))
    if trained:
        scene.put(name, ("copy", f"exp_{task}"))
    else:
        scene.put(name, ("dir", {}))
        scene.put(f"{name}/params.json", ("file", _utf8(json.dumps(GOOD_PARAMS[task]))))
    if draw(st.integers(0, 2)) == 0:
        scene.put(f"{name}/params.json", draw(params_entry(scene, GOOD_PARAMS[task])))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        target = draw(st.sampled_from(RUN_FILES + ["best.pt", "last.pt", "temp"]))
        if target in ("best.pt", "last.pt"):
            scene.put(f"{name}/{target}", draw(checkpoint_entry(scene, task)))
        elif target == "temp":  # what a killed run leaves
            scene.put(f"{name}/.last.pt.1a2b3c4d.tmp", ("file", b"half"), "stale_temp")
        else:
            scene.put(f"{name}/{target}", draw(_run_json_contents()), f"run_file_{target}")
    return draw(spelled(scene, name))


@st.composite
def restore_args(draw, scene: Scene, task: str, default_none: bool) -> list[str]:
    kind = draw(st.sampled_from(["none", "none", "none", "last", "last", "best", "path", "odd"]))
    if kind == "none":
        return []
    if kind in ("last", "best"):
        value = kind
    elif kind == "path":
        scene.put("other.pt", draw(checkpoint_entry(scene, task)))
        value = draw(spelled(scene, "other.pt"))
    else:
        value = draw(st.sampled_from(["", "-", "LAST", "best.pt", "adir", "afile", "loop",
                                      "dangling", "/dev/null", "x" * 300, "fulldir/..",
                                      "last ", "\udcff.pt"]))
        scene.tags.add("odd_restore")
    return draw(option(scene, "--restore", value, ("--restore-file", "--restore_file")))


# ----------------------------------------------------------------------------- tests

@st.composite
def sample_data_cases(draw) -> Case:
    scene = Scene()
    argv = ["sample-data"]
    task = draw(st.sampled_from(["signs", "ner", "ner", None, "nope", "", "bad.py",
                                 "empty.py", "torchstarter", "a..b", "9"]))
    if task is not None:
        argv += draw(opt(scene, "--task", task))
    argv += draw(opt(scene, "--output-dir", draw(output_spot(scene))))
    return scene.case(argv)


@example(case=ex(["sample-data", "--output-dir", "afile/out"]))
@example(case=ex(["sample-data", "--task", "ner", "--output-dir", "dangling"]))
@example(case=ex(["sample-data", "--output-dir", "loop/out"]))
@example(case=ex(["sample-data", "a\nb", "--output-dir", "afile"]))
@example(case=ex(["sample-data", "--task", "ner", "--output-dir", "\udcff-latin1"]))
@fuzz(short_examples=20)
@given(case=sample_data_cases())
def test_sample_data_with_hostile_output_folders_exits_cleanly(case, assets):
    run_case(case, assets, "sample-data")


@st.composite
def build_dataset_cases(draw) -> Case:
    scene = Scene()
    task = draw(st.sampled_from(["signs", "ner", "ner", "nope", "signs"]))
    argv = ["build-dataset"]
    if task != "signs" or draw(st.booleans()):
        argv += draw(opt(scene, "--task", task))
    raw = draw(ner_raw_scene(scene)) if task == "ner" else draw(signs_raw_scene(scene))
    argv += draw(opt(scene, "--data-dir", raw))
    where = draw(st.sampled_from(["spot", "spot", "spot", "inside_raw", "is_raw", "raw_parent"]))
    if where == "spot":
        out = draw(output_spot(scene))
    elif where == "inside_raw":
        out = raw.rstrip("/") + "/" + draw(st.sampled_from(["out", "train_signs", "x/y"]))
    elif where == "is_raw":
        out = raw
    else:
        out = raw.rstrip("/") + "/.."
    argv += draw(opt(scene, "--output-dir", out))
    if draw(st.booleans()):
        argv += draw(opt(scene, "--seed", draw(INTS)))
    if draw(st.booleans()):
        argv.append("--overwrite")
    if task == "signs":
        if draw(st.booleans()):
            argv += draw(opt(scene, "--val-fraction", draw(FLOATS)))
        if draw(st.booleans()):
            argv += draw(opt(scene, "--num-classes", draw(INTS)))
        if draw(st.booleans()):
            argv.append("--drop-leaks")
    elif task == "ner":
        if draw(st.booleans()):
            argv += ["--format", draw(st.sampled_from(["auto", "kaggle", "conll", "csv"]))]
        if draw(st.booleans()):
            argv += ["--encoding", draw(st.sampled_from(
                ["utf-8", "utf-16", "latin-1", "cp1252", "bogus", "", "rot13", "base64",
                 "punycode", "idna", "utf-7", "unicode_escape", "uu_codec", "utf-8-sig"]))]
        if draw(st.booleans()):
            argv.append("--keep-order")
        if draw(st.booleans()):
            argv += draw(opt(scene, "--train-fraction", draw(FLOATS)))
        if draw(st.booleans()):
            argv += draw(opt(scene, "--val-fraction", draw(FLOATS)))
    return scene.case(argv)


@example(case=ex(["build-dataset", "--data-dir", "raw", "--output-dir", "out"],
             {"raw": ("copy", "raw_signs"), "out": ("link", "out")}))
@example(case=ex(["build-dataset", "--data-dir", "raw", "--output-dir", "afile/out"],
             {"raw": ("copy", "raw_signs")}))
@example(case=ex(["build-dataset", "--data-dir", "raw", "--output-dir", "x" * 250],
             {"raw": ("copy", "raw_signs")}))
@example(case=ex(["build-dataset", "--data-dir", "raw", "--output-dir", "\udcff-latin1"],
             {"raw": ("copy", "raw_signs")}))
@example(case=ex(["build-dataset", "--data-dir", "../raw", "--output-dir", ".", "--overwrite"],
             {"../raw": ("copy", "raw_signs")}, tags=("dot_output",)))
@example(case=ex(["build-dataset", "--data-dir", "raw", "--output-dir", "out"],
             {"raw": ("copy", "raw_signs"),
              "raw/train_signs/0_IMG_b.png": ("make", "image", "bomb_warning")}, tags=("bomb",)))
@example(case=ex(["build-dataset", "--data-dir", "raw", "--output-dir", "out"],
             {"raw": ("copy", "raw_signs"),
              "raw/test_signs/1_IMG_b.png": ("make", "image", "bomb_error")}, tags=("bomb",)))
@example(case=ex(["build-dataset", "--data-dir", "raw", "--output-dir", "out"],
             {"raw": ("copy", "raw_signs"),
              "raw/train_signs/2_IMG_p.png": ("make", "image", "png16")}, tags=("png16",)))
@fuzz(short_examples=80)
@given(case=build_dataset_cases())
def test_build_dataset_with_hostile_raw_data_and_outputs_exits_cleanly(case, assets):
    run_case(case, assets, "build-dataset")


@st.composite
def build_vocab_cases(draw) -> Case:
    scene = Scene()
    argv = ["build-vocab"]
    task = draw(st.sampled_from([None, "ner", "signs", "nope"]))
    if task is not None:
        argv += draw(opt(scene, "--task", task))
    argv += draw(opt(scene, "--data-dir", draw(data_scene(scene, "ner"))))
    if draw(st.booleans()):
        argv += draw(opt(scene, "--min-count", draw(INTS)))
    if draw(st.booleans()):
        argv.append("--lowercase")
    if draw(st.booleans()):
        argv.append("--include-eval-splits")
    return scene.case(argv)


@example(case=ex(["build-vocab", "--data-dir", "data"],
             {"data": ("copy", "data_ner"), "data/words.txt": ("dir", {})}))
@fuzz(short_examples=50)
@given(case=build_vocab_cases())
def test_build_vocab_with_hostile_splits_exits_cleanly(case, assets):
    run_case(case, assets, "build-vocab")


@st.composite
def train_cases(draw) -> Case:
    scene = Scene()
    task = draw(st.sampled_from(["signs", "ner"]))
    trained = draw(st.sampled_from([False, False, True]))
    argv = ["train"]
    argv += draw(opt(scene, "--data-dir", draw(data_scene(scene, task))))
    argv += draw(opt(scene, "--model-dir", draw(model_dir_scene(scene, task, trained))))
    argv += draw(restore_args(scene, task, default_none=True))
    if draw(st.booleans()):
        argv.append("--overwrite")
    if draw(st.booleans()):
        argv.append("--no-tensorboard")
    argv += draw(override_args(scene))
    return scene.case(argv)


@example(case=ex(["train"]))
@example(case=ex(["train", "--data-dir", "data", "--model-dir", "exp", "--restore", "other.pt"],
             {"data": ("copy", "data_signs"), "exp": ("dir", {}),
              "exp/params.json": _json(SIGNS_TINY), "other.pt": ("copy", "exp_signs/best.pt"),
              "exp/metrics_val_last_weights.json": ("dir", {})}))
@example(case=ex(["train", "--data-dir", "data", "--model-dir", "exp"],
             {"data": ("copy", "data_signs"), "exp": ("dir", {}), "exp/params.json": DEEP},
             tags=("deep_json",)))
@example(case=ex(["train", "--data-dir", "data", "--model-dir", "exp"],
             {"data": ("copy", "data_signs"), "exp": ("dir", {}),
              "exp/params.json": _json({**SIGNS_TINY, "task": 5})}, tags=("task_nonstr",)))
@example(case=ex(["train", "--data-dir", "data", "--model-dir", "exp"],
             {"data": ("copy", "data_signs"), "exp": ("dir", {"params.json": ("dir", {})})},
             tags=("params_folder",)))
@example(case=ex(["train", "--data-dir", "data", "--model-dir", "exp"],
             {"data": ("copy", "data_signs"), "exp": ("dir", {}),
              "exp/params.json": ("link", "gone.json")}, tags=("params_dangling",)))
@example(case=ex(["train", "--data-dir", "data", "--model-dir", "exp", "--set", "num_epochs=1",
              "--set", "num_epochs=2"],
             {"data": ("copy", "data_signs"), "exp": ("dir", {}),
              "exp/params.json": _json(SIGNS_TINY)}, tags=("dup_set",)))
@fuzz(short_examples=60)
@given(case=train_cases())
def test_train_with_hostile_experiments_exits_cleanly(case, assets):
    run_case(case, assets, "train")


@st.composite
def evaluate_cases(draw) -> Case:
    scene = Scene()
    task = draw(st.sampled_from(["signs", "ner"]))
    argv = ["evaluate"]
    argv += draw(opt(scene, "--data-dir", draw(data_scene(scene, task))))
    argv += draw(opt(scene, "--model-dir", draw(model_dir_scene(scene, task, trained=True))))
    if draw(st.integers(0, 2)) == 0:
        split = draw(st.sampled_from(["test", "val", "train", "../x", "", "tést", "a" * 300,
                                      "test\n", "-", "nosuch", "TEST", "test/../val", "."]))
        argv += draw(opt(scene, "--split", split))
    argv += draw(restore_args(scene, task, default_none=False))
    argv += draw(override_args(scene))
    return scene.case(argv)


@example(case=ex(["evaluate", "--data-dir", "data", "--model-dir", "exp", "--restore", "other.pt"],
             {"data": ("copy", "data_ner"), "exp": ("copy", "exp_ner"),
              "other.pt": ("make", "partial_ckpt", "ner", "format_only")}))
@example(case=ex(["evaluate", "--data-dir", "data", "--model-dir", "exp", "--restore", "other.pt"],
             {"data": ("copy", "data_signs"), "exp": ("copy", "exp_signs"),
              "other.pt": ("make", "partial_ckpt", "signs", "params_int")}))
@example(case=ex(["evaluate", "--data-dir", "data", "--model-dir", "exp", "--restore", LONG_NAME],
             {"data": ("copy", "data_signs"), "exp": ("copy", "exp_signs")}))
@fuzz(short_examples=50)
@given(case=evaluate_cases())
def test_evaluate_with_hostile_checkpoints_and_splits_exits_cleanly(case, assets):
    run_case(case, assets, "evaluate")


SENTENCES = ["John lives in London .", "", " ", "\t", "é ü 日本 😀", "x" * 5000,
             " ".join(["tok"] * 3000), "a\nb", "\udcff word", "<pad> UNK", "-", "--",
             "and/or", "1/2", "notes.txt", "dir/", "C:\\x"]


@st.composite
def predict_cases(draw) -> Case:
    scene = Scene()
    task = draw(st.sampled_from(["signs", "ner"]))
    argv = ["predict"]
    argv += draw(opt(scene, "--model-dir", draw(model_dir_scene(scene, task, trained=True))))
    inputs: list[str] = []
    for i in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3, 3]))):
        kind = draw(st.sampled_from(["file", "file", "folder", "text", "stdin", "missing"]))
        if kind == "file" and task == "signs":
            name = draw(st.sampled_from(IMAGE_NAMES + ["img.gif", "noext"]))
            scene.put(f"in{i}/{name}", draw(image_entry(scene)))
            inputs.append(f"in{i}/{name}")
        elif kind == "file":
            variant = draw(st.sampled_from(["utf8", "utf8", "bom", "utf16", "latin1", "empty",
                                            "blank", "crlf", "binary", "folder", "dangling"]))
            name = draw(st.sampled_from(["in.txt", "sentences", "s.conll", "ünï.txt"]))
            text = "John lives in London .\nMary went to Paris .\n"
            content = {"utf8": ("file", text.encode()), "bom": ("file", b"\xef\xbb\xbf" +
                                                               text.encode()),
                       "utf16": ("file", text.encode("utf-16")),
                       "latin1": ("file", "Zürich est là .\n".encode("latin-1")),
                       "empty": ("file", b""), "blank": ("file", b"\n \n\t\n"),
                       "crlf": ("file", text.replace("\n", "\r\n").encode()),
                       "binary": ("file", draw(st.binary(max_size=100))),
                       "folder": ("dir", {}), "dangling": ("link", "nowhere")}[variant]
            if variant == "bom":
                scene.tags.add("ner_bom")
            scene.put(f"in{i}/{name}", content, f"ner_file_{variant}")
            inputs.append(draw(spelled(scene, f"in{i}/{name}")))
        elif kind == "folder":
            contents = {f"{draw(st.sampled_from(IMAGE_NAMES))}": draw(image_entry(scene))
                        for _ in range(draw(st.integers(0, 2)))}
            scene.put(f"folder{i}", ("dir", contents))
            inputs.append(draw(spelled(scene, f"folder{i}")))
        elif kind == "text":
            inputs.append(draw(st.sampled_from(SENTENCES) | st.text(
                st.characters(blacklist_characters="\x00"), max_size=40)))
        elif kind == "stdin":
            inputs.append("-")
            scene.stdin = draw(st.sampled_from([
                b"", b"John lives in London .\n", b"\xef\xbb\xbfJohn lives .\n",
                "Zürich .\n".encode("latin-1"), "Zürich .\n".encode("utf-16"), b"\x00\x01",
                b"line\r\nline two\r\n"]))
            if scene.stdin[:3] == b"\xef\xbb\xbf" or (task == "ner" and scene.stdin):
                scene.tags.add("ner_stdin" if task == "ner" else "signs_stdin")
        else:
            inputs.append(draw(st.sampled_from(["missing.jpg", "missing.txt", "missing/",
                                                "dangling", "loop", "afile", "adir", "/dev/null",
                                                "fulldir"])))
    if draw(st.booleans()):
        argv.append("--json")
    argv += draw(restore_args(scene, task, default_none=False))
    if inputs and any(i.startswith("-") and i != "-" for i in inputs) and draw(st.booleans()):
        argv.append("--")
    elif any(i.startswith("-") and i != "-" for i in inputs):
        scene.tags.add("dash_value")
    return scene.case(argv + inputs)


@example(case=ex(["predict", "--model-dir", "exp", "--restore", "other.pt", "John ."],
             {"exp": ("copy", "exp_ner"),
              "other.pt": ("make", "partial_ckpt", "ner", "data_info_junk")}))
@example(case=ex(["predict", "--model-dir", "exp", "--restore", LONG_NAME, "a.jpg"],
             {"exp": ("copy", "exp_signs"), "a.jpg": ("copy", "image")}))
@example(case=ex(["predict", "--model-dir", "exp", "0_IMG_b.png"],
             {"exp": ("copy", "exp_signs"), "0_IMG_b.png": ("make", "image", "bomb_warning")},
             tags=("bomb",)))
@example(case=ex(["predict", "--model-dir", "exp", "0_IMG_b.png"],
             {"exp": ("copy", "exp_signs"), "0_IMG_b.png": ("make", "image", "bomb_error")},
             tags=("bomb",)))
@example(case=ex(["predict", "--model-dir", "exp", "a.png", "b.png"],
             {"exp": ("copy", "exp_signs"), "a.png": ("make", "image", "png16"),
              "b.png": ("make", "image", "png16_rgb")}, tags=("png16",)))
@example(case=ex(["predict", "--model-dir", "exp", "in.txt"],
             {"exp": ("copy", "exp_ner"),
              "in.txt": ("file", b"\xef\xbb\xbfJohn lives in London .\n")},
             tags=("ner_bom",)))
@example(case=ex(["predict", "--model-dir", "exp", "-"], {"exp": ("copy", "exp_ner")},
             stdin=b"\xef\xbb\xbfJohn lives in London .\n", tags=("ner_stdin",)))
@example(case=ex(["predict", "--model-dir", "exp", "-"], {"exp": ("copy", "exp_ner")},
             stdin="Zürich .\n".encode("latin-1"), tags=("ner_stdin",)))
@fuzz(short_examples=60)
@given(case=predict_cases())
def test_predict_with_hostile_inputs_exits_cleanly_and_writes_nothing(case, assets):
    run_case(case, assets, "predict")


@st.composite
def demo_cases(draw) -> Case:
    scene = Scene()
    argv = ["demo"]
    tasks = draw(st.sampled_from([["signs"], ["signs"], ["ner"], ["ner"], [], ["bogus"],
                                  ["ner", "ner"]]))
    for task in tasks:
        argv += ["--task", task]
    if draw(st.integers(0, 3)) > 0:
        argv += draw(opt(scene, "--output-dir", draw(output_spot(scene, "demo_out"))))
    one = tasks[0] if len(set(tasks)) == 1 and tasks[0] in GOOD_PARAMS else None
    if draw(st.booleans()):
        good = GOOD_PARAMS[one] if one else SIGNS_TINY
        scene.put("demo_params.json", draw(params_entry(scene, good)))
        argv += draw(opt(scene, "--params", draw(spelled(scene, "demo_params.json"))))
    if draw(st.booleans()):
        raw = draw(ner_raw_scene(scene) if one == "ner" else signs_raw_scene(scene))
        argv += draw(opt(scene, "--raw-dir", raw))
    cheap = {"num_epochs": "1"}
    if one == "signs":
        cheap["num_channels"] = "4"
    elif one == "ner":
        cheap.update(embedding_dim="8", lstm_hidden_dim="8")
    argv += draw(override_args(scene, cheap))
    return scene.case(argv)


@example(case=ex(["demo", "--task", "ner", "--output-dir", "afile/demo_out",
                  "--set", "num_epochs=1"]))
@example(case=ex(["demo", "--task", "ner", "--output-dir", "adir/" + "x" * 256,
                  "--set", "num_epochs=1"]))
@example(case=ex(["demo", "--task", "signs", "--output-dir", "loop", "--raw-dir", "raw", "--set",
              "num_epochs=1", "num_channels=4"], {"raw": ("copy", "raw_signs")}))
@fuzz(short_examples=15)
@given(case=demo_cases())
def test_demo_with_hostile_params_and_folders_exits_cleanly(case, assets):
    run_case(case, assets, "demo")


SEARCH_JSONS = [
    {"space": {"learning_rate": [0.001]}},
    {"space": {"learning_rate": [0.001, 0.001]}},
    {"space": {}}, {"space": []}, {"space": {"task": ["ner"]}},
    {"space": {"learning_rate": []}}, {"space": {"learning_rate": [[1]]}},
    {"space": {"learning_rate": [float("nan")]}},
    {"space": {"num_epochs": {"type": "uniform", "low": 1, "high": 2}}, "method": "random",
     "n_trials": 1},
    {"space": {"learning_rate": {"type": "loguniform", "low": 0, "high": 1}},
     "method": "tpe", "n_trials": 1},
    {"space": {"learning_rate": {"type": "int", "low": 2, "high": 1}}, "method": "random",
     "n_trials": 1},
    {"space": {"learning_rate": [0.001]}, "n_trials": -1},
    {"space": {"learning_rate": [0.001]}, "method": "random", "n_trials": 1e400},
    {"space": {"learning_rate": [0.001]}, "method": "bogus"},
    {"space": {"learning_rate": [0.001]}, "metric": "nope"},
    {"space": {"learning_rate": [0.001]}, "metric": 5, "direction": "up"},
    {"space": {"learning_rate": [0.001]}, "pruner": {"type": "median", "bogus": 1}},
    {"space": {"learning_rate": [0.001]}, "pruner": {"type": "median", "n_startup_trials": -5}},
    {"space": {"learning_rate": [0.001]}, "seed": -1},
    {"space": {"learning_rate": [0.001]}, "spaec": 1},
    {"space": {"unknown_key": [1]}},
    {"space": {"dropout_rate": [2.0]}},
    {"space": {"optimizer": {"type": "categorical", "choices": ["adam", 5]}}, "method": "random",
     "n_trials": 1},
]


@st.composite
def search_cases(draw) -> Case:
    scene = Scene()
    argv = ["search"]
    kind = draw(st.sampled_from(["parent", "parent", "parent", "missing", "file", "dot"]))
    if kind == "parent":
        scene.put("parent", ("dir", {}))
        scene.put("parent/params.json", draw(params_entry(scene, SIGNS_TINY)))
        sj = draw(st.sampled_from(["good", "good", "listed", "json", "none"]))
        if sj == "good":
            scene.put("parent/search.json", ("file", b'{"space": {"learning_rate": [0.001]}}'))
        elif sj == "listed":
            scene.put("parent/search.json",
                      ("file", _utf8(json.dumps(draw(st.sampled_from(SEARCH_JSONS))))),
                      "bad_search_json")
        elif sj == "json":
            scene.put("parent/search.json",
                      draw(json_file(scene, {"space": {"learning_rate": [0.001]}})),
                      "bad_search_json")
        if draw(st.integers(0, 3)) == 0:  # an earlier, damaged trial or journal
            what = draw(st.sampled_from(["journal", "trial_file", "trial_no_params"]))
            if what == "journal":
                scene.put("parent/search.journal", draw(st.sampled_from(
                    [("file", b"junk\n"), ("file", b'{"op_code": 99}\n'), ("dir", {}),
                     ("file", b"\xff\xfe"), ("link", "nowhere")])), "bad_journal")
            elif what == "trial_file":
                scene.put("parent/learning_rate=0.001", ("file", b"x"), "bad_trial")
            else:
                scene.put("parent/learning_rate=0.001", ("dir", {}), "bad_trial")
        parent = draw(spelled(scene, "parent"))
    elif kind == "missing":
        parent = draw(st.sampled_from(["no_parent", "dangling", "loop", "afile/x"]))
    elif kind == "file":
        parent = "afile"
    else:
        scene.put("params.json", draw(params_entry(scene, SIGNS_TINY)))
        parent = draw(st.sampled_from([".", "./"]))
        scene.tags.add("dot_output")
    argv += draw(opt(scene, "--parent-dir", parent))
    argv += draw(opt(scene, "--data-dir", draw(data_scene(scene, "signs"))))
    if draw(st.integers(0, 2)) == 0:
        for _ in range(draw(st.integers(1, 2))):
            argv += draw(opt(scene, "--grid", draw(st.sampled_from(
                ["learning_rate=0.001", "learning_rate=", "=1", "learning_rate", "lr=1,2",
                 "learning_rate=0.001,0.001", "task=ner", "num_epochs=0", "dropout_rate=x",
                 "learning_rate=NaN", "learning_rate=[1]", "learning_rate=0.001,,",
                 "seed=1,2"]))))
    if draw(st.integers(0, 2)) == 0:
        argv += draw(opt(scene, "--jobs", draw(st.sampled_from(
            ["0", "-1", "1", "2", "1000000", "x", "1.5", ""]))))
    if draw(st.integers(0, 2)) == 0:
        storage = draw(st.sampled_from(
            ["store.journal", "adir", "fulldir", "afile", "dangling", "loop", "no/dir/x.journal",
             "sqlite:///s.db", "sqlite:////nonexistent_dir_x/s.db", "bogus://x", "sqlite:///adir",
             "sqlite://", "", "../store.journal", "filelink", "dirlink", "-"]))
        if storage in ("adir", "fulldir", "dirlink"):
            scene.tags.add("storage_dir")
        argv += draw(opt(scene, "--storage", storage))
    if draw(st.integers(0, 2)) == 0:
        argv += draw(opt(scene, "--study-name", draw(st.sampled_from(
            ["s", "", "ünï", "a\nb", "x" * 1000, "-", "../x", "\udcff"]))))
    if draw(st.integers(0, 3)) == 0:
        argv.append("--retry-failed")
    argv += draw(override_args(scene))
    return scene.case(argv)


@example(case=ex(["search", "--parent-dir", "parent", "--data-dir", "data", "--storage", "adir"],
             SEARCH_PARENT, tags=("storage_dir",)))
@fuzz(short_examples=40)
@given(case=search_cases())
def test_search_with_hostile_parents_and_storage_exits_cleanly(case, assets):
    run_case(case, assets, "search")


@st.composite
def synthesize_cases(draw) -> Case:
    scene = Scene()
    kind = draw(st.sampled_from(["tree"] * 6 + ["missing", "file", "empty", "dot"]))
    if kind == "tree":
        scene.put("runs", ("dir", {}))
        for i in range(draw(st.integers(0, 3))):
            task = draw(st.sampled_from(["signs", "ner"]))
            where = draw(st.sampled_from([f"runs/e{i}", f"runs/deep/er/e{i}", f"runs/.hidden{i}",
                                          f"runs/previous_runs/e{i}", f"runs/e{i}/sub"]))
            scene.put(where, ("copy", f"exp_{task}"))
            if draw(st.booleans()):
                scene.put(f"{where}/params.json", draw(params_entry(scene, GOOD_PARAMS[task])))
            for _ in range(draw(st.integers(0, 2))):
                target = draw(st.sampled_from(RUN_FILES))
                scene.put(f"{where}/{target}", draw(_run_json_contents()), f"run_file_{target}")
        if draw(st.integers(0, 3)) == 0:
            scene.put("runs/params.json", draw(params_entry(scene, SIGNS_TINY)))
        if draw(st.integers(0, 3)) == 0:
            target = draw(st.sampled_from(["results.md", "results.csv", "learning_curves.png",
                                           "search_lr.png"]))
            scene.put(f"runs/{target}", draw(st.sampled_from([
                ("file", b"my own notes\n"), ("dir", {}), ("link", "nowhere"),
                ("file", b"<!-- written by torchstarter synthesize; rewritten on every run -->\n"),
                ("link", "results.md")])), "existing_results")
        if draw(st.integers(0, 3)) == 0:
            scene.put("runs/loop", ("link", "."), "link_loop")
        parent = draw(spelled(scene, "runs"))
    elif kind == "missing":
        parent = draw(st.sampled_from(["no_runs", "dangling", "loop"]))
    elif kind == "file":
        parent = draw(st.sampled_from(["afile", "filelink", "/dev/null"]))
    elif kind == "empty":
        parent = "adir"
    else:
        parent = "."
    return scene.case(["synthesize", *draw(opt(scene, "--parent-dir", parent))])


@example(case=ex(["synthesize", "--parent-dir", "runs"],
             {"runs": ("dir", {}), "runs/e1": ("copy", "exp_signs"), "runs/e1/history.json": DEEP,
              "runs/e2": ("copy", "exp_ner"), "runs/e2/params.json": _json({"task": 5})}))
@fuzz(short_examples=50)
@given(case=synthesize_cases())
def test_synthesize_with_damaged_experiments_exits_cleanly(case, assets):
    run_case(case, assets, "synthesize")


@st.composite
def new_cases(draw) -> Case:
    scene = Scene()
    argv = ["new"]
    kind = draw(st.sampled_from(["spot", "spot", "hidden_only", "name"]))
    if kind == "spot":
        target = draw(output_spot(scene, "proj"))
    elif kind == "hidden_only":
        scene.put("proj", ("dir", {".git": ("dir", {}), ".gitkeep": ("file", b"")}))
        target = draw(spelled(scene, "proj"))
    else:
        target = draw(st.sampled_from(["2048", "if", "My Project-2", "ünï", "___", "-", "a b",
                                       "import", "torchstarter", "signs", "x" * 255]))
        scene.tags.add("odd_name")
    template = draw(st.sampled_from([None, "signs", "ner", "ner", "bogus"]))
    if template is not None:
        argv += ["--from", template]
    if target.startswith("-"):
        if draw(st.booleans()):
            argv.append("--")
        else:
            scene.tags.add("dash_value")
    return scene.case(argv + [target])


@example(case=ex(["new", "x" * 255]))
@example(case=ex(["new", "adir/" + "x" * 256]))
@fuzz(short_examples=10)
@given(case=new_cases())
def test_new_with_hostile_project_folders_exits_cleanly(case, assets):
    run_case(case, assets, "new")


COMMANDS = ["build-dataset", "build-vocab", "train", "evaluate", "predict", "sample-data",
            "search", "synthesize", "new", "bogus", "", "TRAIN", "--version", "-h"]
FLAGS = ["--data-dir", "--data_dir", "--output-dir", "--model-dir", "--task", "--restore",
         "--set", "--split", "--seed", "--overwrite", "--json", "--parent-dir", "--grid",
         "--jobs", "--storage", "--from", "--help", "--val-fraction", "--min-count",
         "--format", "--encoding", "--data", "--model", "-", "--", "--set="]
VALUES = ["afile", "adir", "fulldir", "dangling", "loop", "no_such", ".", "..", "", " ", "=",
          "signs", "ner", "k=v", "x" * 300, "ünï", "a\nb", "-1", "nan", "\udcff", "/dev/null"]


@st.composite
def argv_cases(draw) -> Case:
    scene = Scene()
    command = draw(st.sampled_from(COMMANDS))
    tokens = [command] if command else []
    for _ in range(draw(st.integers(0, 6))):
        tokens.append(draw(st.sampled_from(FLAGS) | st.sampled_from(VALUES)))
    if command == "sample-data" and "--output-dir" not in tokens:  # keep runs short
        tokens += ["--output-dir", "afile"]
    return scene.case(tokens)


@example(case=ex(["new", "c", "a\nb"]))
@fuzz(short_examples=100)
@given(case=argv_cases())
def test_any_command_line_gets_one_error_line_or_works(case, assets):
    run_case(case, assets, "argv")
