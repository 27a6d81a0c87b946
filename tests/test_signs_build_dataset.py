import json
import shutil

import numpy as np
import pytest
from conftest import build_args
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from torchstarter.errors import UserError
from torchstarter.tasks.signs.build import build_dataset, plan_split
from torchstarter.tasks.signs.images import label_from_name


@pytest.mark.parametrize("name, label", [
    ("3_IMG_5942.jpg", 3), ("0_IMG_5975 (1).jpg", 0), ("12_IMG_1.jpg", 12), ("5_x.png", 5),
])
def test_label_is_the_whole_numeric_prefix(name, label):
    assert label_from_name(name, num_classes=20) == label


@pytest.mark.parametrize("name", ["IMG_5942.jpg", "x3_IMG_1.jpg", "3IMG.jpg", "_IMG_1.jpg"])
def test_a_name_without_a_label_is_a_user_error(name):
    with pytest.raises(UserError, match="does not start with a label"):
        label_from_name(name, num_classes=6)


def test_a_label_outside_the_class_range_is_a_user_error():
    with pytest.raises(UserError, match="label 6 is outside 0..5"):
        label_from_name("6_IMG_1.jpg", num_classes=6)


@given(st.integers(min_value=0, max_value=10**6), st.text(max_size=10))
def test_any_numeric_prefix_parses_to_its_value(label, rest):
    assert label_from_name(f"{label}_{rest.replace('/', '')}.jpg", num_classes=10**6 + 1) == label


def write_image(path, seed, size=64):
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


@pytest.fixture
def raw_with_duplicates(tmp_path):
    raw = tmp_path / "raw"
    (raw / "train_signs").mkdir(parents=True)
    (raw / "test_signs").mkdir()
    for i in range(20):
        write_image(raw / "train_signs" / f"{i % 6}_IMG_{i}.jpg", seed=i)
    shutil.copyfile(raw / "train_signs" / "0_IMG_0.jpg", raw / "train_signs" / "0_IMG_0 (1).jpg")
    for i in range(4):
        write_image(raw / "test_signs" / f"{i}_IMG_{100 + i}.jpg", seed=100 + i)
    shutil.copyfile(raw / "train_signs" / "1_IMG_1.jpg", raw / "test_signs" / "1_IMG_999.jpg")
    return raw


def test_duplicates_are_reported_and_leaks_can_be_dropped(raw_with_duplicates, tmp_path):
    report = build_dataset(build_args(raw_with_duplicates, tmp_path / "kept"))
    dup = report["duplicates"]
    pair = ["0_IMG_0 (1).jpg", "0_IMG_0.jpg"]
    within_train_or_leak = [pair] in (dup["within"]["train"], dup["within"]["val"]) or \
        any(n in dup["leaks"]["val"] for n in pair)
    assert within_train_or_leak
    assert dup["leaks"]["test"] == ["1_IMG_999.jpg"]
    assert (tmp_path / "kept" / "test_signs" / "1_IMG_999.jpg").exists()

    dropped = build_dataset(build_args(raw_with_duplicates, tmp_path / "dropped",
                                       drop_leaks=True))
    assert not (tmp_path / "dropped" / "test_signs" / "1_IMG_999.jpg").exists()
    assert dropped["splits"]["test"]["images"] == 4
    saved = json.loads((tmp_path / "dropped" / "build_report.json").read_text())
    assert saved["drop_leaks"] is True


def test_split_is_reproducible_80_20_and_test_is_untouched(raw_with_duplicates, tmp_path):
    a = build_dataset(build_args(raw_with_duplicates, tmp_path / "a"))
    build_dataset(build_args(raw_with_duplicates, tmp_path / "b"))
    names = {s: sorted(p.name for p in (tmp_path / "a" / f"{s}_signs").iterdir())
             for s in ("train", "val", "test")}
    for split in ("train", "val", "test"):
        assert names[split] == sorted(p.name for p in (tmp_path / "b" / f"{split}_signs")
                                      .iterdir())
    assert len(names["val"]) == round(21 * 0.2) and len(names["train"]) == 21 - len(names["val"])
    assert a["splits"]["test"]["images"] == 5
    files = sorted((raw_with_duplicates / "train_signs").iterdir())
    assert plan_split(files, 0.2, 230) == plan_split(list(reversed(files)), 0.2, 230)


def test_64px_jpegs_are_copied_and_large_images_resized(raw_with_duplicates, tmp_path):
    write_image(raw_with_duplicates / "test_signs" / "2_IMG_big.jpg", seed=7, size=300)
    report = build_dataset(build_args(raw_with_duplicates, tmp_path / "out"))
    source = raw_with_duplicates / "test_signs" / "0_IMG_100.jpg"
    assert (tmp_path / "out" / "test_signs" / "0_IMG_100.jpg").read_bytes() == source.read_bytes()
    with Image.open(tmp_path / "out" / "test_signs" / "2_IMG_big.jpg") as img:
        assert img.size == (64, 64)
    assert report["splits"]["test"]["resized"] == 1


def test_an_existing_output_is_kept_unless_overwrite(raw_with_duplicates, tmp_path):
    out = tmp_path / "out"
    build_dataset(build_args(raw_with_duplicates, out))
    marker = out / "mine.txt"
    marker.write_text("user file")
    with pytest.raises(UserError, match="folder exists and is not empty"):
        build_dataset(build_args(raw_with_duplicates, out))
    assert marker.exists()


def test_a_corrupt_image_names_the_file_and_writes_nothing(raw_with_duplicates, tmp_path):
    (raw_with_duplicates / "train_signs" / "3_IMG_bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match=r"3_IMG_bad.jpg: not a readable image"):
        build_dataset(build_args(raw_with_duplicates, tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


@pytest.mark.parametrize("where", ["parent", "inside"])
def test_an_output_folder_overlapping_the_raw_data_is_refused(raw_with_duplicates, where):
    """Replacing a folder inside the raw data would delete raw images (train_signs)."""
    out = raw_with_duplicates.parent if where == "parent" else \
        raw_with_duplicates / "train_signs"
    with pytest.raises(UserError, match="overlaps the raw"):
        build_dataset(build_args(raw_with_duplicates, out, overwrite=True))
    assert len(list((raw_with_duplicates / "train_signs").iterdir())) == 21
