"""Hostile inputs from the adversarial CLI pass (issue 17), run through the CLI.

Every mistake a user can fix must end as one stderr line `error: <file>: ...`, exit
code 2, no traceback and no Python warning; inputs that are fine (other image formats,
16-bit or transparent images, a byte-order mark, odd file names) must just work.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from torchstarter.cli.main import main
from torchstarter.tasks.signs.images import open_rgb
from torchstarter.tasks.vision import decode as images

NER_TINY = {"task": "ner", "learning_rate": 0.01, "batch_size": 8, "num_epochs": 1,
            "embedding_dim": 8, "lstm_hidden_dim": 8}
TOO_LARGE = "resize it below 50,000,000 pixels or remove it"


def run(capsys, *argv: object) -> tuple[int, str, str]:
    """The CLI in this process; any warning raised on the way fails the test."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]
    return code, out, err


def refused(capsys, names: object, says: str, *argv: object) -> str:
    """Run a command that must fail in one line naming `names` and saying `says`."""
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and "Warning" not in err, err
    assert str(names) in err, err
    assert says in err, err
    return err


def png_header(path: Path, width: int, height: int) -> Path:
    """A tiny 1-bit PNG whose header declares width x height: what a decoder sees first."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def signs_model(sample_data, tmp_path_factory) -> Path:
    """A SIGNS experiment trained one epoch on the built sample data."""
    model_dir = tmp_path_factory.mktemp("signs") / "exp"
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({**TINY, "num_epochs": 1}))
    assert main(["train", "--data-dir", str(sample_data), "--model-dir", str(model_dir)]) == 0
    return model_dir


@pytest.fixture(scope="module")
def ner_model(tmp_path_factory) -> Path:
    """An NER experiment trained one epoch on the built-in sample corpus."""
    root = tmp_path_factory.mktemp("ner")
    raw, data, model_dir = root / "raw", root / "data", root / "exp"
    for argv in (["sample-data", "--task", "ner", "--output-dir", raw],
                 ["build-dataset", "--task", "ner", "--data-dir", raw, "--output-dir", data],
                 ["build-vocab", "--data-dir", data]):
        assert main([str(a) for a in argv]) == 0, argv
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps(NER_TINY))
    assert main(["train", "--data-dir", str(data), "--model-dir", str(model_dir)]) == 0
    return model_dir


# ------------------------------------------------------------------- image size limits

def test_build_dataset_refuses_a_20000x20000_image_and_keeps_the_old_output(
        sample_raw, sample_data, tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    shutil.copytree(sample_raw, raw)
    shutil.copytree(sample_data, out)
    bomb = png_header(raw / "train_signs" / "3_IMG_bomb.png", 20000, 20000)
    before = snapshot(out)
    err = refused(capsys, bomb, TOO_LARGE, "build-dataset", "--data-dir", raw,
                  "--output-dir", out, "--overwrite")
    assert "400,000,000 pixels" in err
    assert snapshot(out) == before


def test_train_refuses_an_image_over_the_limit(sample_data, make_experiment, tmp_path,
                                               capsys):
    data = tmp_path / "data"
    shutil.copytree(sample_data, data)
    big = png_header(data / "val_signs" / "2_IMG_big.png", 8000, 8000)  # under Pillow's own
    err = refused(capsys, big, TOO_LARGE, "train", "--data-dir", data, "--model-dir",
                  make_experiment(num_epochs=1))
    assert "8000x8000 = 64,000,000 pixels" in err


def test_predict_refuses_a_100_megapixel_image_without_pillows_warning(signs_model, tmp_path,
                                                                       capsys):
    big = png_header(tmp_path / "big.png", 10000, 10000)  # between Pillow's warn and error
    err = refused(capsys, big, TOO_LARGE, "predict", "--model-dir", signs_model, big)
    assert "100,000,000 pixels" in err


def test_predict_in_a_real_process_prints_only_the_one_line(signs_model, tmp_path):
    big = png_header(tmp_path / "big.png", 10000, 10000)
    result = subprocess.run([sys.executable, "-m", "torchstarter", "predict", "--model-dir",
                             str(signs_model), str(big)], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"error: {big}: image is too large (100,000,000 pixels, the "
                             f"limit is 50,000,000); {TOO_LARGE}\n")


def test_pillows_lower_limit_becomes_the_same_refusal(signs_model, sample_data, monkeypatch,
                                                      capsys):
    image = sorted((sample_data / "test_signs").iterdir())[0]  # 64x64 = 4096 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # Pillow warns above 3000
    refused(capsys, image, "the limit is 3,000); resize it below 3,000 pixels or remove it",
            "predict", "--model-dir", signs_model, image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2000
    refused(capsys, image, "(4,096 pixels, the limit is 1,000)",
            "predict", "--model-dir", signs_model, image)


def test_our_limit_refuses_a_real_decodable_image(sample_raw, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    raw = tmp_path / "raw"
    shutil.copytree(sample_raw, raw)
    first = sorted((raw / "train_signs").iterdir())[0]
    with Image.open(first) as img:
        size = img.size
    refused(capsys, first, f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, the limit "
            f"is 1,000); resize it below 1,000 pixels", "build-dataset", "--data-dir", raw,
            "--output-dir", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- modes and formats

def gradient_16bit(path: Path, size: int = 128) -> np.ndarray:
    """A 16-bit grayscale PNG whose values run over the whole 0..65535 range."""
    values = np.linspace(0, 65535, size * size).round().astype(np.uint16).reshape(size, size)
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I"), img.mode  # really 16-bit on disk
    return values


def test_a_16bit_png_is_scaled_to_8_bits_not_clipped_to_white(sample_raw, tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    shutil.copytree(sample_raw, raw)
    gradient_16bit(raw / "test_signs" / "4_IMG_deep.png")
    code, _, err = run(capsys, "build-dataset", "--data-dir", raw, "--output-dir", out)
    assert code == 0, err
    with Image.open(out / "test_signs" / "4_IMG_deep.png") as img:
        assert img.mode == "RGB" and img.size == (64, 64)
        pixels = np.asarray(img)
    assert pixels.min() <= 5 and pixels.max() >= 250
    assert abs(pixels.mean() - 127.5) < 5, pixels.mean()


def test_16bit_values_map_to_8_bits_by_rounding_division(tmp_path):
    values = gradient_16bit(tmp_path / "g.png", size=64)
    got = np.asarray(open_rgb(tmp_path / "g.png"))
    assert (got[..., 0] == got[..., 2]).all()
    assert np.array_equal(got[..., 0], np.rint(values / 257).astype(np.uint8))


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32bit_grayscale_is_scaled_too(tmp_path, mode):
    if mode == "I":
        values = np.linspace(0, 65535, 64 * 64).astype(np.int32).reshape(64, 64)
    else:
        values = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    Image.fromarray(values).save(tmp_path / "x.tif")
    got = np.asarray(open_rgb(tmp_path / "x.tif"))
    assert got.min() == 0 and got.max() == 255 and abs(got.mean() - 127.5) < 1


def test_transparent_and_other_modes_become_the_rgb_a_viewer_shows(tmp_path):
    red = (200, 30, 40)
    rgba = Image.new("RGBA", (8, 8), (*red, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # transparent black: white on screen
    rgba.save(tmp_path / "rgba.png")
    got = open_rgb(tmp_path / "rgba.png")
    assert got.getpixel((0, 0)) == (255, 255, 255) and got.getpixel((1, 1)) == red

    la = Image.new("LA", (4, 4), (100, 255))
    la.putpixel((0, 0), (0, 0))
    la.save(tmp_path / "la.png")
    got = open_rgb(tmp_path / "la.png")
    assert got.getpixel((0, 0)) == (255, 255, 255) and got.getpixel((1, 1)) == (100,) * 3

    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, *red] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.save(tmp_path / "pal.gif", transparency=0)
    got = open_rgb(tmp_path / "pal.gif")
    assert got.mode == "RGB"
    assert got.getpixel((0, 0)) == (255, 255, 255) and got.getpixel((1, 1)) == red

    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    r, g, b = open_rgb(tmp_path / "cmyk.jpg").getpixel((1, 1))
    assert r > 240 and g < 15 and b < 15

    Image.new("L", (4, 4), 77).save(tmp_path / "l.png")
    assert open_rgb(tmp_path / "l.png").getpixel((0, 0)) == (77, 77, 77)
    Image.new("1", (4, 4), 1).save(tmp_path / "bw.bmp")
    assert open_rgb(tmp_path / "bw.bmp").getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (20, 10), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 8, 8))  # a red block at the top left, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: rotate 90 degrees clockwise to show
    img.save(tmp_path / "turned.jpg", exif=exif, quality=100)
    got = open_rgb(tmp_path / "turned.jpg")
    assert got.size == (10, 20)
    r, _, b = got.getpixel((7, 2))  # top left moves to top right
    assert r > 200 and b < 60


def test_every_accepted_suffix_in_any_case_is_built_and_predicted(
        sample_raw, signs_model, tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    shutil.copytree(sample_raw, raw)
    source = sorted((raw / "test_signs").iterdir())[0]
    with Image.open(source) as img:
        picture = img.convert("RGB").resize((80, 80))
    names = ["1_IMG_a.bmp", "2_IMG_b.GIF", "3_IMG_c.webp", "4_IMG_d.tif", "5_IMG_e.TIFF",
             "0_IMG_f.JPG", "1_IMG_g.Jpeg", "2_IMG_h.PNG"]
    for name in names:
        picture.save(raw / "test_signs" / name)
    code, _, err = run(capsys, "build-dataset", "--data-dir", raw, "--output-dir", out)
    assert code == 0, err
    report = json.loads((out / "build_report.json").read_text())
    assert report["splits"]["test"]["images"] == len(list((raw / "test_signs").iterdir()))
    for name in names:
        with Image.open(out / "test_signs" / name) as img:
            assert img.size == (64, 64)

    files = [raw / "test_signs" / name for name in names]
    code, text, err = run(capsys, "predict", "--model-dir", signs_model, "--json", *files)
    assert code == 0, err
    assert [row["file"] for row in json.loads(text)] == [str(f) for f in files]
    folder = tmp_path / "only_bmp"
    folder.mkdir()
    shutil.copyfile(files[0], folder / "x.BMP")
    code, text, err = run(capsys, "predict", "--model-dir", signs_model, "--json", folder)
    assert code == 0 and len(json.loads(text)) == 1, err


# ------------------------------------------------------------- predict's hostile paths

def test_predict_a_folder_without_images(signs_model, tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    (folder / "sub.png").mkdir()  # a folder named like an image is not one
    refused(capsys, folder, "no .jpg/.jpeg/.png images in this folder (nor .bmp/.gif/.tif/"
            ".tiff/.webp); pass image files or folders of images",
            "predict", "--model-dir", signs_model, folder)


def test_predict_a_file_that_is_not_an_image(signs_model, tmp_path, capsys):
    page = tmp_path / "0_IMG_1.png"
    page.write_text("<html>404 Not Found</html>\n")
    refused(capsys, page, "not a readable image (UnidentifiedImageError); remove or replace "
            "the file", "predict", "--model-dir", signs_model, page)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    refused(capsys, notes, "not an image file name (accepted: .jpg/.jpeg/.png/.bmp/.gif/.tif/"
            ".tiff/.webp, in any case)", "predict", "--model-dir", signs_model, notes)


def test_predict_an_empty_file(signs_model, tmp_path, capsys):
    empty = tmp_path / "empty.jpg"
    empty.touch()
    refused(capsys, empty, "empty file, not an image; remove or replace the file",
            "predict", "--model-dir", signs_model, empty)


def test_predict_symbolic_link_loops_and_broken_links(signs_model, tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    refused(capsys, loop, "symbolic link loop", "predict", "--model-dir", signs_model, loop)
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    refused(capsys, a, "symbolic link loop", "predict", "--model-dir", signs_model, a / "x")
    broken = tmp_path / "broken.png"
    broken.symlink_to(tmp_path / "gone.png")
    refused(capsys, broken, "broken symbolic link", "predict", "--model-dir", signs_model,
            broken)
    # links that loop inside a folder are left out like any other non-file
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "x.json").write_text("{}")
    (folder / "self.png").symlink_to(folder / "self.png")
    (folder / "up").symlink_to(folder)
    refused(capsys, folder, "no .jpg/.jpeg/.png images", "predict", "--model-dir",
            signs_model, folder)


def test_predict_paths_with_spaces_and_unicode(signs_model, sample_data, tmp_path, capsys):
    folder = tmp_path / "mes images ñandú"
    folder.mkdir()
    image = folder / "señal 1 ✋.png"
    shutil.copyfile(sorted((sample_data / "test_signs").iterdir())[0], image)
    code, text, err = run(capsys, "predict", "--model-dir", signs_model, "--json", image,
                          folder)
    assert code == 0, err
    assert [row["file"] for row in json.loads(text)] == [str(image)] * 2
    missing = folder / "señal 2 ✋.png"
    refused(capsys, missing, "no such file or folder; pass image files or folders of images",
            "predict", "--model-dir", signs_model, missing)


def test_predict_a_path_that_cannot_be_read(signs_model, sample_data, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    image = tmp_path / "locked.png"
    shutil.copyfile(sorted((sample_data / "test_signs").iterdir())[0], image)
    image.chmod(0)
    refused(capsys, image, "not a readable image (PermissionError)", "predict",
            "--model-dir", signs_model, image)


# ------------------------------------------------------------------ NER text encodings

def predict_ner(capsys, model_dir: Path, *inputs: object) -> list[dict]:
    code, out, err = run(capsys, "predict", "--model-dir", model_dir, "--json", *inputs)
    assert code == 0, err
    return json.loads(out)


def test_a_byte_order_mark_does_not_stick_to_the_first_word(ner_model, tmp_path, capsys):
    sentence = "John lives in New York ."
    plain, marked = tmp_path / "plain.txt", tmp_path / "marked.txt"
    plain.write_bytes(sentence.encode() + b"\n")
    marked.write_bytes(b"\xef\xbb\xbf" + sentence.encode() + b"\r\n")
    expected = predict_ner(capsys, ner_model, plain)
    assert predict_ner(capsys, ner_model, marked) == expected
    assert expected[0]["tokens"][0] == "John"


def test_stdin_is_read_as_utf8_like_a_file(ner_model, monkeypatch, capsys):
    def stdin(data: bytes) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data),
                                                           encoding="latin-1"))
    stdin(b"\xef\xbb\xbfJohn lives in Paris .\ncaf\xc3\xa9 is open .\n")
    rows = predict_ner(capsys, ner_model, "-")
    assert rows[0]["tokens"][0] == "John" and rows[1]["tokens"][0] == "café"
    stdin(b"John lives in Paris .\ncaf\xe9 is open .\n")
    refused(capsys, "<stdin>:2", "<stdin>:2: byte 0xE9 is not UTF-8 text; convert it to "
            "UTF-8 (e.g. iconv -f windows-1252 -t utf-8)", "predict", "--model-dir",
            ner_model, "-")


def test_real_stdin_with_a_latin1_byte_is_refused(ner_model):
    result = subprocess.run([sys.executable, "-m", "torchstarter", "predict", "--model-dir",
                             str(ner_model), "-"], input=b"caf\xe9\n", capture_output=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode() == ("error: <stdin>:1: byte 0xE9 is not UTF-8 text; "
                                      "convert it to UTF-8 (e.g. iconv -f windows-1252 -t "
                                      "utf-8)\n")


def test_files_in_other_encodings_name_the_line(ner_model, tmp_path, capsys):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"John lives in Paris .\ncaf\xe9 is open .\n")
    refused(capsys, f"{latin}:2", f"{latin}:2: byte 0xE9 is not UTF-8 text; convert it to "
            f"UTF-8", "predict", "--model-dir", ner_model, latin)
    wide = tmp_path / "wide.txt"
    wide.write_bytes("John lives in Paris .\n".encode("utf-16"))
    refused(capsys, f"{wide}:1", "UTF-16 text (it starts with a UTF-16 byte-order mark), not "
            "UTF-8 text; convert it to UTF-8 (e.g. iconv -f utf-16 -t utf-8)",
            "predict", "--model-dir", ner_model, wide)
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"John lives .\nPar\x00is .\n")
    refused(capsys, f"{nul}:2", "holds a NUL byte", "predict", "--model-dir", ner_model, nul)


# The rows of docs/errors.md these tests prove: command, a fragment of the message shown
# there, and the tests. test_bad_input checks the table against this.
ROWS = {
    "image-too-large": ("build-dataset", "image is too large", [
        test_build_dataset_refuses_a_20000x20000_image_and_keeps_the_old_output,
        test_train_refuses_an_image_over_the_limit,
        test_predict_refuses_a_100_megapixel_image_without_pillows_warning,
        test_predict_in_a_real_process_prints_only_the_one_line]),
    "image-empty": ("predict", "empty file, not an image", [test_predict_an_empty_file]),
    "predict-not-an-image": ("predict", "not an image file name", [
        test_predict_a_file_that_is_not_an_image, test_predict_a_folder_without_images]),
    "predict-link-broken": ("predict", "symbolic link loop", [
        test_predict_symbolic_link_loops_and_broken_links]),
    "predict-text-encoding": ("predict", "is not UTF-8 text", [
        test_stdin_is_read_as_utf8_like_a_file, test_real_stdin_with_a_latin1_byte_is_refused,
        test_files_in_other_encodings_name_the_line]),
}
