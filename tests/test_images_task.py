"""The general images task: every layout, color mode and size it promises, split keeping,
class names from the data to predict's output, and the one-line refusals."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from torchstarter.cli.main import main
from torchstarter.errors import UserError
from torchstarter.tasks import load_task
from torchstarter.tasks.images.build import carve
from torchstarter.tasks.images.layouts import Item
from torchstarter.tasks.vision.decode import fit, open_rgb

TASK = load_task("images")
COLORS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "owl": (30, 30, 200)}


def picture(path: Path, color: tuple[int, int, int], size=(20, 12), seed: int = 0) -> Path:
    """A distinct small picture of roughly `color` (noise keeps every file unique)."""
    rng = np.random.default_rng(seed)
    base = np.array(color, dtype=np.int16).reshape(1, 1, 3)
    pixels = np.clip(base + rng.integers(-20, 21, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def class_folders(root: Path, per_class: int = 10, classes=COLORS, start: int = 0) -> Path:
    for k, (name, color) in enumerate(classes.items()):
        for i in range(per_class):
            picture(root / name / f"{i:03d}.png", color, seed=start + 100 * k + i)
    return root


def build(raw: Path, out: Path, **options) -> list[str]:
    return TASK.build_dataset(TASK.build_options(raw, out, **options))


def rows(out: Path, split: str) -> list[dict[str, str]]:
    with open(out / f"{split}.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def report(out: Path) -> dict:
    return json.loads((out / "build_report.json").read_text())


# ---- layouts ------------------------------------------------------------------------------

def test_class_folders_are_carved_by_class_with_the_seed(tmp_path):
    raw = class_folders(tmp_path / "raw", per_class=20)
    lines = build(raw, tmp_path / "a")
    build(raw, tmp_path / "b")
    rep = report(tmp_path / "a")
    assert rep["classes"] == ["cat", "dog", "owl"] and rep["layout"] == "class folders"
    assert rep["splits_from"] == "split_by_fractions"
    assert any(line.startswith("splits: val 0.15 and test 0.15 of each class carved")
               for line in lines)
    for split, n in (("train", 14), ("val", 3), ("test", 3)):
        assert rep["splits"][split]["per_class"] == {"cat": n, "dog": n, "owl": n}
        assert rows(tmp_path / "a", split) == rows(tmp_path / "b", split)  # same seed
    sources = [r["source"] for s in ("train", "val", "test") for r in rows(tmp_path / "a", s)]
    assert sorted(sources) == sorted(f"{c}/{i:03d}.png" for c in COLORS for i in range(20))
    built = Image.open(tmp_path / "a" / rows(tmp_path / "a", "val")[0]["file"])
    assert built.size == (64, 64) and built.mode == "RGB"


@pytest.mark.parametrize("val_name", ["val", "valid", "dev"])
def test_split_folders_are_kept_image_for_image(tmp_path, val_name):
    raw = tmp_path / "raw"
    class_folders(raw / "train", 6)
    class_folders(raw / val_name, 2, start=1000)
    class_folders(raw / "test", 3, start=2000)
    lines = build(raw, tmp_path / "out", image_size=16)
    assert lines[1] == "splits: kept as given, image for image"
    for split, folder, n in (("train", "train", 6), ("val", val_name, 2), ("test", "test", 3)):
        got = [r["source"] for r in rows(tmp_path / "out", split)]
        assert got == sorted(f"{folder}/{c}/{i:03d}.png" for c in COLORS for i in range(n))
        assert all(r["label"] == r["source"].split("/")[1] for r in rows(tmp_path / "out",
                                                                           split))
    assert report(tmp_path / "out")["split_folders"]["val"] == f"{val_name}/"
    assert report(tmp_path / "out")["splits_from"] == "kept"


def test_train_and_test_folders_get_val_carved_from_train_only(tmp_path):
    raw = tmp_path / "raw"
    class_folders(raw / "train", 10)
    class_folders(raw / "test", 2, start=500)
    build(raw, tmp_path / "out", image_size=16)
    test = {r["source"] for r in rows(tmp_path / "out", "test")}
    assert test == {f"test/{c}/{i:03d}.png" for c in COLORS for i in range(2)}
    val = [r["source"] for r in rows(tmp_path / "out", "val")]
    assert len(val) == 6 and all(s.startswith("train/") for s in val)
    assert report(tmp_path / "out")["splits_from"] == "val_carved_from_train"


def test_resplit_pools_the_given_splits(tmp_path):
    raw = tmp_path / "raw"
    class_folders(raw / "train", 10)
    class_folders(raw / "test", 10, start=500)
    build(raw, tmp_path / "out", image_size=16, resplit=True)
    test = [r["source"] for r in rows(tmp_path / "out", "test")]
    assert {s.split("/")[0] for s in test} == {"train", "test"}  # drawn from both
    assert report(tmp_path / "out")["splits_from"] == "resplit"


def test_csv_of_paths_and_labels_with_and_without_a_split_column(tmp_path):
    raw = tmp_path / "raw"
    lines = ["path,label"]
    for k, name in enumerate(["Red panda", "snow, leopard"]):
        for i in range(8):
            picture(raw / "img" / f"{k}_{i}.jpg", list(COLORS.values())[k], seed=10 * k + i)
            lines.append(f'img/{k}_{i}.jpg,"{name}"')
    (raw / "labels.csv").write_text("\n".join(lines) + "\n")
    build(raw / "labels.csv", tmp_path / "out", image_size=16)
    assert report(tmp_path / "out")["classes"] == ["Red panda", "snow, leopard"]
    # a folder holding just the CSV reads it; a split column keeps its splits
    with_split = ["path,label,split"] + [f"{line},{'test' if i % 4 == 0 else 'train'}"
                                         for i, line in enumerate(lines[1:])]
    (raw / "labels.csv").write_text("\n".join(with_split) + "\n")
    build(raw / "labels.csv", tmp_path / "out2", image_size=16)
    assert len(rows(tmp_path / "out2", "test")) == 4


def test_signs_file_names_are_a_layout_too(tmp_path):
    for split, n in (("train_signs", 8), ("test_signs", 2)):
        for label in (0, 1, 10):
            for i in range(n):
                picture(tmp_path / "raw" / split / f"{label}_IMG_{split}{i}.jpg",
                        (20 * label, 90, 90), seed=label * 50 + i + (0 if n == 8 else 999))
    build(tmp_path / "raw", tmp_path / "out", image_size=16)
    assert report(tmp_path / "out")["classes"] == ["0", "1", "10"]  # numeric order


# ---- pixels --------------------------------------------------------------------------------

def test_color_modes_sixteen_bits_and_exif_become_the_right_rgb(tmp_path):
    deep = np.array([[0, 32896, 65535, 65535]], dtype=np.uint16)  # 32896 = 128 * 257
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert np.asarray(open_rgb(tmp_path / "deep.png"))[0, :, 0].tolist() == [0, 128, 255, 255]
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    r, g, b = np.asarray(open_rgb(tmp_path / "cmyk.jpg"))[2, 2]
    assert r > 200 and g < 60 and b < 60  # cyan 0, magenta and yellow full: red
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert np.asarray(open_rgb(tmp_path / "clear.png")).min() == 255  # shown on white
    Image.new("P", (4, 4), 3).save(tmp_path / "palette.gif")
    assert open_rgb(tmp_path / "palette.gif").mode == "RGB"
    # EXIF orientation 6 (turn 90 degrees clockwise to view): a 30x10 file shows 10x30
    wide = Image.new("RGB", (30, 10), (255, 255, 255))
    wide.paste((0, 0, 0), (0, 0, 5, 10))  # black strip on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6
    wide.save(tmp_path / "turned.jpg", exif=exif, quality=100)
    upright = np.asarray(open_rgb(tmp_path / "turned.jpg"))
    assert upright.shape[:2] == (30, 10) and upright[:5].mean() < 60  # strip now on top


def test_fit_crops_or_pads_keeping_the_aspect(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 10, 20))  # a black quarter on the left
    cropped, padded = fit(img, 10, "crop"), fit(img, 10, "pad")
    assert cropped.size == padded.size == (10, 10)
    assert np.asarray(cropped).min() > 200  # the middle half: no black left
    pad = np.asarray(padded).astype(int)
    assert pad[:2].max() == 0 and pad[-2:].max() == 0  # black bands above and below
    assert pad[4:6, 5:].min() > 200 and pad[4:6, :2].max() < 60


def test_a_thin_strip_is_cropped_without_a_huge_intermediate(tmp_path):
    strip = Image.new("RGB", (1, 200_000), (10, 20, 30))
    assert np.asarray(fit(strip, 64, "crop")).shape == (64, 64, 3)
    assert np.asarray(fit(strip, 64, "pad")).shape == (64, 64, 3)


def test_a_fifo_named_like_an_image_is_not_read(tmp_path):
    import os
    raw = class_folders(tmp_path / "raw", 10)
    os.mkfifo(raw / "cat" / "pipe.png")  # opening it would wait forever for a writer
    build(raw, tmp_path / "out", image_size=8)
    assert "cat/pipe.png" not in (tmp_path / "out" / "train.csv").read_text()


def test_normalisation_comes_from_train_only(tmp_path):
    raw = tmp_path / "raw"
    class_folders(raw / "train", 4, {"a": (0, 0, 0), "b": (0, 0, 0)})
    for name in ("a", "b"):
        for i in range(2):
            path = raw / "test" / name / f"w{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 12), (255, 255, 255)).save(path)
    build(raw, tmp_path / "out", image_size=8, val_fraction=0.25)
    mean = report(tmp_path / "out")["normalisation"]["mean"]
    assert max(mean) < 0.05  # the white test pictures did not count


def test_duplicates_and_leaks_are_reported_and_droppable(tmp_path):
    raw = tmp_path / "raw"
    class_folders(raw / "train", 6)
    class_folders(raw / "test", 2, start=900)
    (raw / "test" / "cat" / "copy.png").write_bytes((raw / "train" / "cat" / "000.png")
                                                    .read_bytes())
    lines = build(raw, tmp_path / "out", image_size=16)
    assert report(tmp_path / "out")["duplicates"]["leaks"]["test"] == ["test/cat/copy.png"]
    assert any("--drop-leaks" in line for line in lines)
    build(raw, tmp_path / "clean", image_size=16, drop_leaks=True)
    assert "test/cat/copy.png" not in {r["source"] for r in rows(tmp_path / "clean", "test")}


# ---- refusals ------------------------------------------------------------------------------

def bad_layouts(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each hostile layout and the words its one-line refusal must hold."""
    cases = {}
    val_only = tmp_path / "val_only"
    class_folders(val_only / "val", 2)
    class_folders(val_only / "test", 2)
    cases["images-split-without-train"] = (val_only, "a split folder without train/")
    empty = class_folders(tmp_path / "empty", 3)
    (empty / "ghost").mkdir()
    (empty / "ghost" / "notes.txt").write_text("no pictures here")
    cases["images-class-folder-empty"] = (empty, "class folder with no images")
    one = class_folders(tmp_path / "one", 5, {"cat": (1, 2, 3)})
    cases["images-one-class"] = (one, "a classifier needs at least two classes")
    unseen = tmp_path / "unseen"
    class_folders(unseen / "train", 5, {"cat": (1, 2, 3), "dog": (9, 9, 9)})
    class_folders(unseen / "test", 2, {"cat": (1, 2, 3), "owl": (5, 5, 5)}, start=90)
    cases["images-class-not-in-train"] = (unseen, "has no training images")
    class_folders(tmp_path / "outside" / "img", 3)
    (tmp_path / "outside" / "labels.csv").write_text("path,label\n../secret.png,cat\n")
    picture(tmp_path / "secret.png", (1, 1, 1))
    cases["images-csv-path-outside"] = (tmp_path / "outside" / "labels.csv",
                                       "points outside")
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "labels.csv").write_text("path,label\nnope.png,cat\n")
    cases["images-csv-path-missing"] = (missing / "labels.csv", "no such image file")
    broken = class_folders(tmp_path / "broken", 3)
    (broken / "dog" / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cases["images-not-readable"] = (broken, "not a readable image")
    two_vals = tmp_path / "two_vals"
    for name in ("train", "val", "valid"):
        class_folders(two_vals / name, 2)
    cases["images-split-twice"] = (two_vals, "a second val folder")
    return cases


def test_every_bad_layout_is_one_line_and_the_built_folder_stays(tmp_path, capsys):
    good = class_folders(tmp_path / "good", 10)
    out = tmp_path / "out"
    assert main(["build-dataset", "--task", "images", "--data-dir", str(good),
                 "--output-dir", str(out), "--image-size", "16"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    for name, (raw, words) in bad_layouts(tmp_path).items():
        code = main(["build-dataset", "--task", "images", "--data-dir", str(raw),
                     "--output-dir", str(out), "--overwrite", "--image-size", "16"])
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, (name,
                                                                                        err)
        assert str(raw.name) in err, (name, err)  # names the file or folder at fault
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_an_oversized_image_is_refused_from_its_header(tmp_path, monkeypatch):
    from torchstarter.tasks.vision import decode
    raw = class_folders(tmp_path / "raw", 3)  # 20x12 = 240 pixels each
    monkeypatch.setattr(decode, "MAX_PIXELS", 100)
    with pytest.raises(UserError, match="image is too large"):
        build(raw, tmp_path / "out")


def test_hostile_names_and_reports_are_one_line_too(tmp_path):
    import os
    # a class folder whose name is not UTF-8 cannot go into the split tables
    raw = class_folders(tmp_path / "raw", 4)
    os.rename(bytes(raw / "dog"), bytes(raw) + b"/d\xffog")
    with pytest.raises(UserError, match="not UTF-8 text"):
        build(raw, tmp_path / "out")
    # a NUL inside a CSV path
    table = tmp_path / "nul" / "labels.csv"
    class_folders(tmp_path / "nul", 3)
    table.write_text('path,label\ncat/000.png,cat\n"cat/001\0.png",cat\n')
    with pytest.raises(UserError, match="labels.csv:3: the path holds a NUL"):
        build(table, tmp_path / "out")
    # --drop-leaks that would empty val
    same = tmp_path / "same"
    for name in ("a", "b"):
        for i in range(6):
            picture(same / name / f"{i}.png", (9, 9, 9) if name == "a" else (99, 9, 9))
    with pytest.raises(UserError, match="would leave val empty"):
        build(same, tmp_path / "out", drop_leaks=True)
    # a report edited into nonsense
    good = class_folders(tmp_path / "good", 6)
    build(good, tmp_path / "built", image_size=8)
    path = tmp_path / "built" / "build_report.json"
    for key, value in (("image_size", -1), ("fit", "stretch")):
        damaged = {**report(tmp_path / "built"), key: value}
        path.write_text(json.dumps(damaged))
        with pytest.raises(UserError, match="damaged"):
            TASK.describe_data(None, tmp_path / "built")


def test_numeric_class_names_sort_the_same_every_time(tmp_path):
    from torchstarter.tasks.images.build import class_order
    assert class_order({"2", "01", "10", "1"}) == ["01", "1", "2", "10"]
    assert class_order({"1", "\u00b2", "3"}) == ["1", "3", "\u00b2"]  # not a number: text
    raw = class_folders(tmp_path / "raw", 10, {"stop_signs": (1, 1, 1), "cars": (200, 9, 9)})
    build(raw, tmp_path / "out", image_size=8)  # a class named *_signs is a class
    assert report(tmp_path / "out")["layout"] == "class folders"


# ---- splitting, as a property ----------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=5), st.integers(0, 10**6),
       st.floats(0.05, 0.4), st.floats(0.05, 0.4))
def test_carving_keeps_every_image_once_and_each_class_in_train(sizes, seed, val, test):
    items = [Item(Path(f"{c}/{i}"), f"c{c}", f"c{c}/{i}") for c, n in enumerate(sizes)
             for i in range(n)]
    parts = carve(items, {"val": val, "test": test}, seed)
    assert carve(items, {"val": val, "test": test}, seed) == parts
    flat = [it.source for split in parts.values() for it in split]
    assert sorted(flat) == sorted(it.source for it in items)
    assert {it.label for it in parts["train"]} == {it.label for it in items}
    # one more class changes no other class's cut
    more = carve(items + [Item(Path("new/0"), "zz", "zz/0"), Item(Path("new/1"), "zz", "zz/1")],
                 {"val": val, "test": test}, seed)
    for split in parts:
        assert [it for it in more[split] if it.label != "zz"] == parts[split]


# ---- through training, evaluate and predict ---------------------------------------------------

def test_class_names_travel_from_folders_to_predict(tmp_path, capsys):
    raw = tmp_path / "raw"
    class_folders(raw / "train", 12)
    class_folders(raw / "test", 3, start=700)
    data = tmp_path / "data"
    build(raw, data, image_size=16)
    model = tmp_path / "exp"
    model.mkdir()
    (model / "params.json").write_text(json.dumps(
        {"task": "images", "learning_rate": 3e-3, "batch_size": 16, "num_epochs": 2,
         "num_channels": 4, "augmentation": False, "seed": 1}))
    assert main(["train", "--data-dir", str(data), "--model-dir", str(model),
                 "--no-tensorboard"]) == 0
    import torch
    info = torch.load(model / "best.pt", weights_only=False)["data_info"]
    assert info["classes"] == ["cat", "dog", "owl"] and info["image_size"] == 16
    (data / "build_report.json").unlink()  # evaluate and predict need only the checkpoint
    assert main(["evaluate", "--data-dir", str(data), "--model-dir", str(model)]) == 0
    first = json.loads((model / "predictions_test_best.jsonl").read_text().splitlines()[1])
    assert first["true"] in COLORS and set(first["probabilities"]) == set(COLORS)
    capsys.readouterr()
    # a big, non-square RGBA picture from elsewhere is fitted the way build-dataset did it
    odd = Image.new("RGBA", (300, 120), COLORS["owl"] + (255,))
    buffer = io.BytesIO()
    odd.save(buffer, format="PNG")
    (tmp_path / "new.png").write_bytes(buffer.getvalue())
    assert main(["predict", "--model-dir", str(model), "--json", str(tmp_path / "new.png"),
                 str(raw / "test" / "dog")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 4 and all(row["label"] in COLORS for row in out)
    assert set(out[0]["probabilities"]) == set(COLORS)


# The rows of docs/errors.md these tests prove: command, a fragment of the message shown
# there, and the tests. test_bad_input checks the table against this.
ROWS = {row: ("build-dataset", says,
              [test_every_bad_layout_is_one_line_and_the_built_folder_stays])
        for row, says in {
            "images-split-without-train": "a split folder without train/",
            "images-split-twice": "a second val folder",
            "images-class-folder-empty": "class folder with no images",
            "images-one-class": "a classifier needs at least two classes",
            "images-class-not-in-train": "has no training images",
            "images-csv-path-outside": "points outside",
            "images-csv-path-missing": "no such image file",
            "images-not-readable": "not a readable image"}.items()}


def test_16_bit_pixels_scale_to_the_same_bytes_in_float32_as_in_float64():
    """to_rgb divides 16-bit values by 257 in float32 (half the memory of float64 on a
    large picture): every one of the 65,536 values rounds to the same byte either way."""
    from torchstarter.tasks.vision.decode import to_rgb

    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    got = np.asarray(to_rgb(Image.fromarray(values)))[:, :, 0]  # Pillow: mode I;16
    assert np.array_equal(got, np.rint(values.astype(np.float64) / 257).astype(np.uint8))
