"""Where the pictures and their labels are: the layouts `build-dataset --task images` reads.

    class folders   SRC/<class>/**/<image>                      splits carved with the seed
    split folders   SRC/{train,val,test}/<class>/**/<image>      splits kept as they are
                    (val may be named valid, validation or dev)
    CSV             a .csv with columns path,label[,split]      paths relative to its folder
    SIGNS names     SRC/{train,val,test}_signs/<label>_IMG_<id>.jpg

A folder is read as SIGNS when it has *_signs folders, as split folders when it has a
train/ (or val/, test/) folder, else as class folders; a folder holding only one .csv
file reads that file. Hidden entries (.git, .DS_Store) and __MACOSX are skipped.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from torchstarter.errors import UserError
from torchstarter.tasks.signs.images import label_from_name
from torchstarter.tasks.vision.decode import SUFFIX_LIST, is_image_name

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}
LAYOUT_HINT = ("give a folder of class folders (<class>/<image>), of split folders "
               "(train/<class>/<image>, val/..., test/...), a .csv of path,label, or SIGNS "
               "folders (train_signs/<label>_IMG_<id>.jpg)")


@dataclass(frozen=True)
class Item:
    """One picture: its file, its class name, and how the user knows it (a relative path)."""

    path: Path
    label: str
    source: str


@dataclass
class Found:
    """What a layout holds: items per split as given ("all" when the layout has no splits)."""

    layout: str
    items: dict[str, list[Item]]
    split_sources: dict[str, str] = field(default_factory=dict)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """(visible subfolders, visible image files) of a folder, each sorted by name."""
    try:
        children = sorted(p for p in folder.iterdir() if not _hidden(p.name))
    except OSError as exc:
        raise UserError(f"{folder}: cannot list the folder ({exc.strerror}); check its "
                        f"permissions") from None
    return ([p for p in children if p.is_dir()],
            [p for p in children if p.is_file() and is_image_name(p)])


def _text(name: str, where: str) -> str:
    """A file or folder name as text; one whose bytes are not UTF-8 cannot be written to
    the split tables, so it is refused here rather than halfway through the build."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{where.encode('utf-8', 'backslashreplace').decode()}: the name is "
                        f"not UTF-8 text; rename it") from None
    return name


def _check_label(label: str, where: str) -> str:
    _text(label, where)
    if not label.strip():
        raise UserError(f"{where}: empty class name; give every image a label")
    if any(ord(c) < 32 or ord(c) == 127 for c in label):
        raise UserError(f"{where}: class name {label!r} holds a control character (a line "
                        f"break or tab); rename it")
    return label


def discover(data: Path) -> Found:
    """The layout at `data` and its items, refused in one line when it is none of them."""
    data = Path(data)
    if data.is_file():
        if data.suffix.lower() == ".csv":
            return read_csv_layout(data)
        raise UserError(f"{data}: a file, not a .csv of path,label; {LAYOUT_HINT}")
    if not data.is_dir():
        raise UserError(f"{data}: no such file or folder; {LAYOUT_HINT}")
    folders, images = _entries(data)
    if not folders:
        csvs = sorted(p for p in data.iterdir() if p.is_file() and p.suffix.lower() == ".csv"
                      and not _hidden(p.name))
        if len(csvs) == 1 and not images:
            return read_csv_layout(csvs[0])
        what = "only image files" if images else "no class folders"
        raise UserError(f"{data}: {what}; {LAYOUT_HINT}")
    names = {p.name.lower(): p for p in folders}
    if "train_signs" in names or "test_signs" in names:  # not any class named *_signs
        return _signs_layout(data, folders)
    if any(name in SPLIT_ALIASES for name in names):
        return _split_layout(data, folders, images)
    if images:
        raise UserError(f"{images[0]}: an image outside any class folder; move it into the "
                        f"folder of its class")
    return Found("class folders", {"all": _class_folders(data, folders, data)})


def _class_folders(parent: Path, folders: list[Path], root: Path) -> list[Item]:
    """Every image under each class folder (subfolders too), sorted by path."""
    items: list[Item] = []
    for folder in folders:
        label = _check_label(folder.name, str(folder))
        found = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
            found += [Path(dirpath) / f for f in filenames  # is_file: no FIFO or device
                      if not _hidden(f) and is_image_name(Path(f))
                      and (Path(dirpath) / f).is_file()]
        if not found:
            raise UserError(f"{folder}: class folder with no images ({SUFFIX_LIST}); add its "
                            f"images or remove the folder")
        items += [Item(p, label, _text(p.relative_to(root).as_posix(), repr(str(p))))
                  for p in found]
    items.sort(key=lambda item: item.source)  # one order on every system
    if not items:
        raise UserError(f"{parent}: no class folders; {LAYOUT_HINT}")
    return items


def _split_layout(data: Path, folders: list[Path], images: list[Path]) -> Found:
    if images:
        raise UserError(f"{images[0]}: an image beside the split folders; move it into "
                        f"train/<class>/ (or val/, test/)")
    by_split: dict[str, Path] = {}
    for folder in folders:
        split = SPLIT_ALIASES.get(folder.name.lower())
        if split is None:
            raise UserError(f"{folder}: a folder beside the split folders that is not a split "
                            f"(train, val/valid/validation/dev, test); move or remove it")
        if split in by_split:
            raise UserError(f"{folder}: a second {split} folder beside {by_split[split].name}/; "
                            f"keep one of them")
        by_split[split] = folder
    if "train" not in by_split:
        first = next(iter(by_split.values()))
        raise UserError(f"{first}: a split folder without train/ beside it; add the "
                        f"training images as {data / 'train'}/<class>/, or give the class "
                        f"folders without split folders")
    items = {}
    for split, folder in by_split.items():
        subfolders, loose = _entries(folder)
        if loose:
            raise UserError(f"{loose[0]}: an image outside any class folder; move it into "
                            f"{folder}/<class>/")
        if not subfolders:
            raise UserError(f"{folder}: a split folder without class folders; put its "
                            f"images in {folder}/<class>/")
        items[split] = _class_folders(folder, subfolders, data)
    return Found("split folders", items, {s: f.name + "/" for s, f in by_split.items()})


def _signs_layout(data: Path, folders: list[Path]) -> Found:
    by_split: dict[str, Path] = {}
    for folder in folders:
        split = SPLIT_ALIASES.get(folder.name.lower().removesuffix("_signs"))
        if folder.name.lower().endswith("_signs") and split is not None:
            if split in by_split:
                raise UserError(f"{folder}: a second {split} folder beside "
                                f"{by_split[split].name}/; keep one of them")
            by_split[split] = folder
    if "train" not in by_split:
        raise UserError(f"{data}: SIGNS folders without train_signs/; add it")
    items = {}
    for split, folder in by_split.items():
        _, files = _entries(folder)
        if not files:
            raise UserError(f"{folder}: no images ({SUFFIX_LIST}); add them or remove the "
                            f"folder")
        items[split] = [Item(path, str(label_from_name(path, sys.maxsize)),
                             _text(path.relative_to(data).as_posix(), repr(str(path))))
                        for path in files]  # any label: the classes are what is found
    return Found("SIGNS file names", items, {s: f.name + "/" for s, f in by_split.items()})


def read_csv_layout(table: Path) -> Found:
    """Rows of path,label[,split]; each path relative to the CSV's folder and inside it."""
    base = table.parent.resolve()
    try:
        with open(table, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise UserError(f"{table}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except csv.Error as exc:
        raise UserError(f"{table}: not a readable CSV ({exc}); fix the file") from None
    except OSError as exc:
        raise UserError(f"{table}: cannot read it ({exc.strerror})") from None
    if not rows:
        raise UserError(f"{table}: empty; the first line names the columns path,label")
    header = [cell.strip().lower() for cell in rows[0]]
    if "path" not in header or "label" not in header:
        raise UserError(f"{table}:1: the header must name the columns path and label (and "
                        f"optionally split), found {','.join(rows[0])[:80]!r}")
    col_path, col_label = header.index("path"), header.index("label")
    col_split = header.index("split") if "split" in header else None
    items: dict[str, list[Item]] = {}
    seen: dict[Path, int] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{table}:{lineno}"
        if len(row) != len(header):
            raise UserError(f"{where}: {len(row)} columns, the header has {len(header)}; fix "
                            f"the row (quote a value that holds a comma)")
        given = row[col_path].strip()
        label = _check_label(row[col_label].strip(), where)
        split = "all"
        if col_split is not None:
            split = SPLIT_ALIASES.get(row[col_split].strip().lower(), "")
            if not split:
                raise UserError(f"{where}: split {row[col_split]!r} is not train, val or test "
                                f"(valid, validation and dev also mean val)")
        if not given:
            raise UserError(f"{where}: empty path; give the image's path relative to {base}")
        if "\0" in given:
            raise UserError(f"{where}: the path holds a NUL character; fix the row")
        path = (base / given).resolve()
        if Path(given).is_absolute() or not path.is_relative_to(base):
            raise UserError(f"{where}: {given!r} points outside {base}; paths must be relative "
                            f"to the CSV's folder and stay inside it")
        if not path.is_file():
            raise UserError(f"{where}: {given!r}: no such image file in {base}; fix the path "
                            f"or remove the row")
        if not is_image_name(path):
            raise UserError(f"{where}: {given!r} is not an image file name ({SUFFIX_LIST})")
        if path in seen:
            raise UserError(f"{where}: {given!r} is listed again (first on line {seen[path]}); "
                            f"keep one row per image")
        seen[path] = lineno
        items.setdefault(split, []).append(Item(path, label, path.relative_to(base).as_posix()))
    if not items:
        raise UserError(f"{table}: no rows after the header; list one image a line")
    if col_split is not None and "train" not in items:
        raise UserError(f"{table}: no row has split train; the training images are needed")
    sources = {s: f"{table.name} split={s}" for s in items} if col_split is not None else {}
    return Found("CSV", items, sources)
