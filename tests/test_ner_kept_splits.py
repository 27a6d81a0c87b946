"""build-dataset --task ner on a folder holding a corpus's own split files.

Results are only comparable on a corpus's official test split, so train.*, valid.*|dev.*
and test.* are kept sentence for sentence; only train + test carves val from train with
the seed, and --resplit pools everything on purpose. Every sentence's first token names
it, so a split can be compared with the file it came from by name.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchstarter.cli.main import main
from torchstarter.errors import UserError
from torchstarter.tasks.ner import TASK
from torchstarter.tasks.ner.corpus import read_corpus, read_split

SPLITS = ("train", "val", "test")
DOCSTART = "-DOCSTART- -X- -X- O\n\n"


def conll(names: list[str], docstart_every: int = 3) -> str:
    """CoNLL-2003 style: four columns, a -DOCSTART- line before every few sentences."""
    out = []
    for i, name in enumerate(names):
        if i % docstart_every == 0:
            out.append(DOCSTART)
        out.append(f"{name} NNP B-PER\nwent VBD O\nhome NN O\n\n")
    return "".join(out)


def kaggle(names: list[str]) -> str:
    rows = ["Sentence #,Word,POS,Tag"]
    for i, name in enumerate(names, start=1):
        rows += [f"Sentence: {i},{name},NNP,B-geo", ",rains,VBZ,O"]
    return "\n".join(rows) + "\n"


def corpus(folder: Path, files: dict[str, list[str]]) -> Path:
    """Write each file of sentence names as CoNLL (Kaggle CSV for .csv and .zip)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file, names in files.items():
        lower = file.lower()
        if lower.endswith(".zip"):
            with zipfile.ZipFile(folder / file, "w") as archive:
                archive.writestr("ner_dataset.csv", kaggle(names))
        elif lower.endswith(".csv"):
            (folder / file).write_text(kaggle(names))
        else:
            (folder / file).write_text(conll(names))
    return folder


def names_of(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def build(raw: Path, out: Path, **options) -> list[str]:
    return TASK.build_dataset(TASK.build_options(raw, out, **options))


def built(out: Path) -> dict[str, list[str]]:
    return {split: [tokens[0] for tokens, _ in read_split(out / split)] for split in SPLITS}


def report(out: Path) -> dict:
    return json.loads((out / "build_report.json").read_text())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


THREE = {"train.txt": names_of("tr", 20), "valid.txt": names_of("va", 6),
         "test.txt": names_of("te", 7)}


# ------------------------------------------------------------------------ kept splits

def test_three_split_files_are_kept_sentence_for_sentence_in_file_order(tmp_path):
    raw = corpus(tmp_path / "raw", THREE)
    (raw / "README.md").write_text("about this corpus")
    (raw / "LICENSE.txt").write_text("CC BY 4.0")
    lines = build(raw, tmp_path / "out")
    assert built(tmp_path / "out") == {"train": THREE["train.txt"], "val": THREE["valid.txt"],
                                       "test": THREE["test.txt"]}
    assert ("splits: kept as the corpus ships them (train.txt, valid.txt, test.txt), every "
            "sentence in file order") in lines
    assert lines[0] == f"format: conll ({raw}: train.txt, valid.txt, test.txt); 33 sentences"
    assert any(line.startswith("val  :       6 sentences") and line.endswith(" 18 tokens")
               for line in lines)
    assert not any("README" in line or "LICENSE" in line for line in lines)
    rep = report(tmp_path / "out")
    assert rep["splits_from"] == "kept"
    assert rep["split_files"] == {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}
    assert {s: (rep["splits"][s]["sentences"], rep["splits"][s]["tokens"]) for s in SPLITS} \
        == {"train": (20, 60), "val": (6, 18), "test": (7, 21)}
    assert rep["train_fraction"] is None and rep["val_fraction"] is None
    assert rep["source"] == str(raw.resolve()) and rep["ignored_files"] == []


def test_kept_splits_do_not_depend_on_the_seed_or_keep_order(tmp_path):
    raw = corpus(tmp_path / "raw", THREE)
    build(raw, tmp_path / "a", seed=1)
    build(raw, tmp_path / "b", seed=2, keep_order=True)
    assert built(tmp_path / "a") == built(tmp_path / "b")


@pytest.mark.parametrize("files", [
    ("train.conll", "dev.conll", "test.conll"),
    ("train.txt", "dev.txt", "test.txt"),
    ("TRAIN.TXT", "Val.txt", "Test.Conll"),
    ("train.txt", "validation.txt", "test.txt"),
    ("train.csv", "dev.conll", "test.csv.zip"),
], ids=["dev-conll", "dev-txt", "any-case", "validation", "mixed-formats"])
def test_dev_val_names_any_case_and_any_format_are_kept(tmp_path, files):
    raw = corpus(tmp_path / "raw", dict(zip(files, THREE.values(), strict=True)))
    lines = build(raw, tmp_path / "out")
    assert built(tmp_path / "out") == dict(zip(SPLITS, THREE.values(), strict=True))
    assert f"splits: kept as the corpus ships them ({', '.join(files)}), every sentence in " \
           f"file order" in lines
    rep = report(tmp_path / "out")
    assert rep["split_files"] == dict(zip(SPLITS, files, strict=True))
    assert rep["format"] == ("mixed" if files[0].endswith(".csv") else "conll")


def test_other_corpus_files_beside_the_splits_are_ignored_and_said_so(tmp_path):
    raw = corpus(tmp_path / "raw", {**THREE, "pretrain.txt": ["x"], "ner_dataset.csv": ["y"]})
    (raw / "labels.txt").write_text("B-PER\nO\n")
    (raw / ".train.txt").write_text("hidden\n")
    lines = build(raw, raw / "built")
    assert built(raw / "built")["train"] == THREE["train.txt"]
    assert "ignored: labels.txt, ner_dataset.csv, pretrain.txt (not named train, valid/dev/val " \
           "or test)" in lines
    assert report(raw / "built")["ignored_files"] == ["labels.txt", "ner_dataset.csv",
                                                      "pretrain.txt"]
    build(raw, raw / "built", overwrite=True)  # the output inside the raw folder is no split


# ------------------------------------------------------------- val carved from train

def test_train_and_test_carve_val_from_train_with_the_seed(tmp_path):
    train = names_of("tr", 40)
    raw = corpus(tmp_path / "raw", {"train.txt": train, "test.txt": names_of("te", 9)})
    lines = build(raw, tmp_path / "a", seed=7)
    build(raw, tmp_path / "b", seed=7)
    build(raw, tmp_path / "c", seed=8)
    a, b, c = built(tmp_path / "a"), built(tmp_path / "b"), built(tmp_path / "c")
    assert a == b and a["val"] != c["val"]
    assert len(a["val"]) == round(40 * 0.15) and not set(a["train"]) & set(a["val"])
    assert sorted(a["train"] + a["val"]) == sorted(train)
    for part in (a["train"], a["val"]):  # both parts keep the file's order
        assert part == [name for name in train if name in set(part)]
    assert a["test"] == names_of("te", 9)
    assert ("splits: train and test as the corpus ships them (train.txt, test.txt); val carved "
            "from train.txt: 6 of its 40 sentences (--val-fraction 0.15), picked with seed 7; "
            "both parts in file order") in lines
    rep = report(tmp_path / "a")
    assert rep["splits_from"] == "val_carved_from_train"
    assert rep["split_files"] == {"train": "train.txt", "val": "train.txt", "test": "test.txt"}
    assert (rep["train_fraction"], rep["val_fraction"]) == (None, 0.15)


def test_carving_uses_val_fraction_and_keep_order_takes_the_tail(tmp_path):
    train = names_of("tr", 10)
    raw = corpus(tmp_path / "raw", {"train.conll": train, "test.conll": ["te0"]})
    lines = build(raw, tmp_path / "out", val_fraction=0.3, keep_order=True)
    assert built(tmp_path / "out") == {"train": train[:7], "val": train[7:], "test": ["te0"]}
    assert any("3 of its 10 sentences (--val-fraction 0.3), the last ones (--keep-order)" in line
               for line in lines)


def test_a_train_file_alone_is_cut_like_one_corpus_and_says_so(tmp_path):
    train = names_of("s", 100)
    raw = corpus(tmp_path / "raw", {"train.txt": train})
    lines = build(raw, tmp_path / "folder")
    build(raw / "train.txt", tmp_path / "file")
    assert built(tmp_path / "folder") == built(tmp_path / "file")
    assert [len(part) for part in built(tmp_path / "folder").values()] == [70, 15, 15]
    assert "splits: only train.txt ships, so val and test are cut from it 0.7/0.15/rest, " \
           "shuffled with seed 230" in lines
    assert report(tmp_path / "folder")["splits_from"] == "split_by_fractions"


@pytest.mark.parametrize("given", ["file", "folder"])
def test_one_corpus_file_builds_as_before_whatever_its_name(tmp_path, given):
    raw = corpus(tmp_path / "raw", {"valid.txt": names_of("s", 100)})
    lines = build(raw / "valid.txt" if given == "file" else raw, tmp_path / "out")
    assert lines[0] == f"format: conll ({raw / 'valid.txt'}); 100 sentences, shuffled with " \
                       f"seed 230"
    assert not any(line.startswith("splits:") for line in lines)
    assert [len(part) for part in built(tmp_path / "out").values()] == [70, 15, 15]
    rep = report(tmp_path / "out")
    assert rep["splits_from"] == "split_by_fractions"
    assert rep["split_files"] == dict.fromkeys(SPLITS, "valid.txt")
    assert (rep["train_fraction"], rep["val_fraction"]) == (0.7, 0.15)


# ---------------------------------------------------------------------------- resplit

def test_resplit_pools_train_val_test_and_cuts_by_the_fractions(tmp_path):
    raw = corpus(tmp_path / "raw", THREE)
    pool = [name for names in THREE.values() for name in names]
    lines = build(raw, tmp_path / "a", resplit=True)
    build(raw, tmp_path / "b", resplit=True)
    a = built(tmp_path / "a")
    assert a == built(tmp_path / "b")
    assert sorted(sum(a.values(), [])) == sorted(pool)
    assert [len(part) for part in a.values()] == [round(33 * 0.7), round(33 * 0.15), 5]
    assert a["train"] != pool[:23]  # shuffled, not cut in file order
    assert ("splits: --resplit: train.txt, valid.txt, test.txt pooled in that order and cut "
            "0.7/0.15/rest, shuffled with seed 230; the corpus's own splits are not kept") in lines
    rep = report(tmp_path / "a")
    assert (rep["splits_from"], rep["resplit"]) == ("resplit", True)
    assert rep["split_files"] == dict.fromkeys(SPLITS, "train.txt + valid.txt + test.txt")
    build(raw, tmp_path / "ordered", resplit=True, keep_order=True, train_fraction=0.5,
          val_fraction=0.25)
    assert built(tmp_path / "ordered") == {"train": pool[:16], "val": pool[16:24],
                                           "test": pool[24:]}


def test_the_cli_takes_resplit_and_documents_it(tmp_path, capsys):
    raw = corpus(tmp_path / "raw", {"train.txt": names_of("tr", 20),
                                    "dev.txt": names_of("de", 5)})
    argv = ["build-dataset", "--task", "ner", "--data-dir", str(raw),
            "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "--resplit" in capsys.readouterr().err
    assert main([*argv, "--resplit"]) == 0
    assert "splits: --resplit: train.txt, dev.txt pooled" in capsys.readouterr().out
    assert TASK.build_options(raw, tmp_path).resplit is False
    assert main(["build-dataset", "--task", "ner", "--help"]) == 0
    assert "--resplit" in capsys.readouterr().out


# -------------------------------------------------------------------------- bad input

BAD = {
    "val-and-test-without-train": (
        {"valid.txt": ["va"], "test.txt": ["te"]}, {},
        "holds valid.txt and test.txt but no train.* file"),
    "dev-and-valid": (
        {"train.txt": ["tr"], "dev.txt": ["de"], "valid.txt": ["va"], "test.txt": ["te"]}, {},
        "dev.txt and valid.txt both hold the val split"),
    "two-train-files": (
        {"train.txt": ["tr"], "train.conll": ["tc"], "test.txt": ["te"]}, {},
        "train.conll and train.txt both hold the train split"),
    "empty-val": (
        {"train.txt": ["tr"], "valid.txt": [], "test.txt": ["te"]}, {},
        "valid.txt: the val split holds no sentences"),
    "empty-test": (
        {"train.txt": ["tr", "tr2"], "test.txt": []}, {},
        "test.txt: the test split holds no sentences"),
    "empty-train": (
        {"train.txt": [], "valid.txt": ["va"], "test.txt": ["te"]}, {},
        "train.txt: the train split holds no sentences"),
    "train-and-val-without-test": (
        {"train.txt": ["tr"], "dev.txt": ["de"]}, {},
        "holds train.txt and dev.txt but no test.* file"),
    "train-fraction-on-kept": (
        THREE, {"train_fraction": 0.8}, "--train-fraction 0.8: the split files in"),
    "val-fraction-on-kept": (
        THREE, {"val_fraction": 0.2}, "--val-fraction 0.2: the split files in"),
    "train-fraction-on-carved": (
        {"train.txt": ["tr", "tr2"], "test.txt": ["te"]}, {"train_fraction": 0.6},
        "make train of train.txt less the val carved from it"),
    "train-too-small-to-carve": (
        {"train.txt": ["tr"], "test.txt": ["te"]}, {},
        "train.txt: --val-fraction 0.15 of its 1 sentence carves 0 for val, which leaves an "
        "empty val split"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_split_files_are_one_line_errors_before_anything_is_written(tmp_path, case):
    files, options, words = BAD[case]
    raw = corpus(tmp_path / "raw", files)
    for file, names in files.items():
        if not names:  # an empty split file: only a -DOCSTART- line, or nothing
            (raw / file).write_text(DOCSTART if file.startswith("valid") else "")
    out = tmp_path / "out"
    corpus(tmp_path / "good", {"train.txt": names_of("s", 20)})
    build(tmp_path / "good", out)
    before = snapshot(out)
    with pytest.raises(UserError) as exc:
        build(raw, out, overwrite=True, **options)
    message = str(exc.value)
    assert words in message and "\n" not in message
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "out", "raw"]


def test_a_bad_split_file_is_one_line_on_stderr_with_exit_2(tmp_path, capsys):
    raw = corpus(tmp_path / "raw", {"train.txt": ["tr"], "test.txt": ["te"]})
    (raw / "test.txt").write_text("Paris X-LOC\n")
    assert main(["build-dataset", "--task", "ner", "--data-dir", str(raw),
                 "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {raw / 'test.txt'}: sentence 1 has tag 'X-LOC', which is not BIO " \
                  f"(O, B-<type> or I-<type>); convert the corpus tags to BIO first\n"
    assert not (tmp_path / "out").exists()


def test_reading_a_split_folder_as_one_corpus_still_asks_for_one_file(tmp_path):
    raw = corpus(tmp_path / "raw", THREE)
    with pytest.raises(UserError, match=r"holds 3 corpus files .*named train\.\*"):
        read_corpus(raw)


# --------------------------------------------------------------------------- property

@settings(max_examples=25, deadline=None)
@given(sizes=st.tuples(st.integers(2, 25), st.integers(0, 8), st.integers(1, 8)),
       docstart_every=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_every_sentence_lands_exactly_once_in_its_own_split(tmp_path_factory, sizes,
                                                            docstart_every, seed):
    n_train, n_val, n_test = sizes
    raw = tmp_path_factory.mktemp("raw")
    files = {"train.txt": names_of("tr", n_train), "dev.txt": names_of("de", n_val),
             "test.txt": names_of("te", n_test)}
    if not n_val:
        del files["dev.txt"]
    for file, names in files.items():
        (raw / file).write_text(conll(names, docstart_every))
    out = tmp_path_factory.mktemp("out") / "data"
    if not n_val and round(n_train * 0.15) < 1:  # nothing to carve val from: refused
        with pytest.raises(UserError, match="leaves an empty val split"):
            build(raw, out, seed=seed)
        assert not out.exists()
        return
    build(raw, out, seed=seed)
    splits = built(out)
    assert splits["test"] == files["test.txt"]
    if n_val:
        assert splits["train"] == files["train.txt"] and splits["val"] == files["dev.txt"]
    else:
        assert sorted(splits["train"] + splits["val"]) == sorted(files["train.txt"])
        assert len(splits["val"]) == round(n_train * 0.15)
    assert sum(report(out)["splits"][s]["sentences"] for s in SPLITS) == sum(sizes)


# The rows of docs/errors.md these tests prove: command, a fragment of the message shown
# there, and the tests. test_bad_input checks the table against this.
ROWS = {row: ("build-dataset", says,
              [test_bad_split_files_are_one_line_errors_before_anything_is_written])
        for row, says in {
            "ner-split-without-train": "but no train.* file",
            "ner-split-twice": "both hold the val split",
            "ner-split-empty": "the val split holds no sentences",
            "ner-split-no-test": "but no test.* file",
            "ner-fraction-unused": "the split files in"}.items()}
