"""Reading NER corpora (Kaggle GMB CSV, CoNLL columns) and the built split files.

Every reader returns sentences as (tokens, tags) pairs of equal length. A broken input
raises UserError naming the file and line, because a corpus of a million rows is not
something a user can debug from a traceback.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from torchstarter.errors import UserError

Sentence = tuple[list[str], list[str]]

FORMATS = ("auto", "kaggle", "conll")
KAGGLE_ENCODING = "cp1252"
CORPUS_NAMES = ("ner_dataset.csv", "ner_dataset.csv.zip")
CORPUS_SUFFIXES = (".conll", ".txt", ".csv")
SENTENCES_FILE = "sentences.txt"
LABELS_FILE = "labels.txt"

_ZIP_MAGIC = b"PK\x03\x04"
_PROBE_BYTES = 1 << 16  # enough of a file's start to tell UTF-16 or binary from text
# The characters str.split() splits on, and NUL, which marks a split file as binary.
_UNSAFE_IN_TOKEN = re.compile(r"[\s\x00]")
_NOT_A_CORPUS = ("readme", "license", "licence")

# A corpus that ships its own splits names its files after them: train.txt, dev.conll,
# valid.csv, test.zip (any case). Longest suffix first, so train.csv.zip is a train file.
SPLIT_ORDER = ("train", "val", "test")
SPLIT_STEMS = {"train": "train", "valid": "val", "validation": "val", "dev": "val",
               "val": "val", "test": "test"}
SPLIT_SUFFIXES = (".csv.zip", ".conll", ".txt", ".csv", ".zip")


# ---------------------------------------------------------------------------- Kaggle CSV

def read_kaggle_csv(path: Path) -> list[Sentence]:
    """Read the Kaggle `ner_dataset.csv`, or a .zip holding it, streamed without unpacking.

    The zip member is decoded as it is read, so the 15 MB CSV never has to exist on disk.
    """
    path = Path(path)
    if _is_zip(path):
        return _read_kaggle_zip(path)
    try:
        return _parse_kaggle(lambda: open(path, "rb"), str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; pass the Kaggle ner_dataset.csv "
                        f"(or its .zip)") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected the Kaggle ner_dataset.csv "
                        f"(or its .zip)") from None


def _is_zip(path: Path) -> bool:
    if path.suffix.lower() == ".zip":
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == _ZIP_MAGIC
    except OSError:
        return False  # the reader that follows reports the problem with the right words


def _read_kaggle_zip(path: Path) -> list[Sentence]:
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; pass the Kaggle ner_dataset.csv.zip "
                        f"(or the unzipped .csv)") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{path}: not a readable zip archive ({exc}); download it again "
                        f"or unzip it and pass the .csv") from None
    with archive:
        members = [info for info in archive.infolist()
                   if not info.is_dir() and info.filename.lower().endswith(".csv")
                   and not info.filename.startswith("__MACOSX/")]
        if len(members) != 1:
            found = ", ".join(info.filename for info in members) or "none"
            raise UserError(f"{path}: the zip must hold exactly one .csv file, found "
                            f"{len(members)} ({found}); unzip it and pass the .csv to use")
        member = members[0]
        try:
            return _parse_kaggle(lambda: archive.open(member), f"{path}:{member.filename}")
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
                RuntimeError) as exc:
            raise UserError(f"{path}: cannot read {member.filename} from the zip ({exc}); "
                            f"download it again or unzip it and pass the .csv") from None


def _parse_kaggle(open_stream: Callable[[], IO[bytes]], where: str) -> list[Sentence]:
    # Decoding in C through TextIOWrapper is several times faster than line by line in
    # Python; the price is that a decode error does not know its line, so only then is
    # the source read a second time, line by line, to find it.
    with open_stream() as probe:
        head = probe.read(_PROBE_BYTES)
    wide = _wide_text(head)
    if wide is not None:
        raise UserError(f"{where}:{wide[0]}: {wide[1]}; the Kaggle NER CSV is windows-1252 "
                        f"(or UTF-8): convert it (e.g. iconv -f utf-16 -t utf-8), or pass "
                        f"--format conll for a CoNLL file")
    encoding = _kaggle_encoding(head)
    with io.TextIOWrapper(open_stream(), encoding=encoding, newline="") as text:
        try:
            return _parse_rows(csv.reader(text), where)
        except UnicodeDecodeError:
            pass
    lineno, byte = _first_undecodable(open_stream, encoding)
    label = "windows-1252" if encoding == KAGGLE_ENCODING else "UTF-8"
    mixed = "" if encoding == KAGGLE_ENCODING else \
        " (the file starts as UTF-8, so it mixes two encodings)"
    raise UserError(f"{where}:{lineno}: byte 0x{byte:02X} is not {label} text{mixed}; expected "
                    f"the Kaggle NER CSV in windows-1252 (or all UTF-8), or pass --format conll "
                    f"for a CoNLL file")


def _kaggle_encoding(head: bytes) -> str:
    """windows-1252 as Kaggle ships it, unless the start of the file says it was re-saved.

    A byte-order mark, or non-ASCII bytes that form valid UTF-8 sequences (which
    windows-1252 text practically never does), mean UTF-8; reading that as windows-1252
    would silently turn every accented word into two wrong characters.
    """
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.isascii():
        return KAGGLE_ENCODING
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return KAGGLE_ENCODING
    return "utf-8"


def _wide_text(data: bytes) -> tuple[int, str] | None:
    """(line, what) when bytes are UTF-16 or binary rather than 8-bit text, else None.

    UTF-16 and binary data hold NUL bytes, which no text a user would tag ever does;
    read as windows-1252 or even UTF-8 they would decode into garbage tokens.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return 1, "UTF-16 text (it starts with a UTF-16 byte-order mark)"
    nul = data.find(b"\x00")
    if nul < 0:
        return None
    return data.count(b"\n", 0, nul) + 1, "holds a NUL byte: UTF-16 text or a binary file"


def _first_undecodable(open_stream: Callable[[], IO[bytes]], encoding: str) -> tuple[int, int]:
    with open_stream() as stream:
        for lineno, raw in enumerate(stream, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                return lineno, raw[exc.start]
    raise AssertionError("the text decoder failed on bytes that decode line by line")


def _find_columns(header: list[str], where: str) -> tuple[int, int, int]:
    names = [cell.strip().lower() for cell in header]
    sentence = next((i for i, n in enumerate(names) if n.startswith("sentence")), None)
    word = names.index("word") if "word" in names else None
    tag = names.index("tag") if "tag" in names else None
    if sentence is None or word is None or tag is None:
        found = ", ".join(repr(cell.strip()[:40]) for cell in header[:12])
        if len(header) > 12:
            found += ", ..."
        raise UserError(f"{where}: header has columns {found or 'none'}; a Kaggle NER CSV "
                        f"needs 'Sentence #', 'Word' and 'Tag' (POS optional); fix the "
                        f"header or pass --format conll")
    return sentence, word, tag


def _blank(row: list[str]) -> bool:
    return not any(cell.strip() for cell in row)


def _parse_rows(reader: Any, where: str) -> list[Sentence]:
    # The common row (marker or not, word and tag present) takes the fewest checks; the
    # rarer cases (blank rows, short rows, errors) are sorted out only when it fails.
    sentences: list[Sentence] = []
    tokens: list[str] | None = None
    tags: list[str] = []
    columns: tuple[int, int, int] | None = None
    last_line = 0
    try:
        for row in reader:
            start, last_line = last_line + 1, reader.line_num
            if columns is None:
                if _blank(row):
                    continue
                s_col, w_col, t_col = columns = _find_columns(row, f"{where}:{start}")
                width = max(columns) + 1
                marker_name = row[s_col].strip()
                continue
            if last_line != start and any("\n" in cell or "\r" in cell for cell in row):
                raise UserError(f"{where}:{start}: a quoted field runs over several lines "
                                f"(an unclosed quote?); close the quote")
            if len(row) < width:
                if _blank(row):
                    continue  # blank lines carry nothing
                row = row + [""] * (width - len(row))
            word, tag, marker = row[w_col].strip(), row[t_col].strip(), row[s_col]
            if marker and not marker.isspace():
                tokens, tags = [], []
                sentences.append((tokens, tags))
            elif tokens is None:
                if _blank(row):
                    continue
                raise UserError(f"{where}:{start}: data row before any sentence marker; the "
                                f"first data row must start a sentence in column "
                                f"{marker_name!r} (e.g. 'Sentence: 1')")
            if not word or not tag:
                if _blank(row):
                    continue  # all-empty rows (",,,") as spreadsheets leave them
                column = "Word" if not word else "Tag"
                raise UserError(f"{where}:{start}: row has no {column.lower()} in the "
                                f"{column!r} column; fill it in or delete the row")
            tokens.append(word)
            tags.append(tag)
    except csv.Error as exc:
        raise UserError(f"{where}:{max(reader.line_num, last_line + 1)}: not CSV text "
                        f"({exc}); expected the Kaggle NER CSV, or pass --format conll for a "
                        f"CoNLL file") from None
    if columns is None:
        raise UserError(f"{where}: empty file; expected the Kaggle NER CSV with header "
                        f"'Sentence #,Word,POS,Tag'")
    if not sentences:
        raise UserError(f"{where}: has a header but no data rows; add sentences or pass "
                        f"another corpus file")
    return sentences


# ------------------------------------------------------------------------------- CoNLL

def read_conll(path: Path, encoding: str = "utf-8") -> list[Sentence]:
    """Read a CoNLL column file: token first, tag last, a blank line between sentences.

    Middle columns (POS, chunk) are ignored so CoNLL-2003 and two-column files both work.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; pass a CoNLL file or the Kaggle "
                        f"ner_dataset.csv") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a CoNLL file") from None
    text = _decode(data, encoding, path)
    if text.startswith("\ufeff"):
        text = text[1:]
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    for lineno, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"),
                                  start=1):
        columns = line.split()
        if not columns or columns[0].startswith("-DOCSTART-"):
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if len(columns) < 2:
            raise UserError(f"{path}:{lineno}: line has one column ({columns[0][:40]!r}); a "
                            f"CoNLL line needs the token first and the tag last, separated "
                            f"by whitespace")
        tokens.append(columns[0])
        tags.append(columns[-1])
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def _decode(data: bytes, encoding: str, path: Path) -> str:
    normalized = encoding.lower().replace("-", "").replace("_", "")
    wide = None if normalized.startswith(("utf16", "utf32")) else _wide_text(data)
    if wide is not None:
        raise UserError(f"{path}:{wide[0]}: {wide[1]}, not {encoding} text; pass --encoding "
                        f"utf-16 if it is UTF-16, or convert it (iconv -f utf-16 -t utf-8)")
    try:
        return data.decode(encoding)
    except LookupError:
        raise UserError(f"{path}: unknown encoding {encoding!r}; use a Python codec name "
                        f"such as utf-8 or cp1252") from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        hint = "convert it to UTF-8"
        if normalized == "utf8":
            try:
                data.decode(KAGGLE_ENCODING)
                hint = "it reads as windows-1252: convert it with iconv -f cp1252 -t utf-8"
            except UnicodeDecodeError:
                hint = "convert it to UTF-8 (iconv -f ENCODING -t utf-8)"
        raise UserError(f"{path}:{line}: byte 0x{data[exc.start]:02X} is not {encoding} "
                        f"text; {hint}, or pass --encoding with its encoding "
                        f"(e.g. latin-1)") from None


# --------------------------------------------------------------------- finding a corpus

def locate_corpus(path: Path) -> Path:
    """The corpus file itself, or the one corpus file inside a folder.

    README and LICENSE files are not candidates, so a downloaded folder with its notes
    still has exactly one corpus in it.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; pass the Kaggle ner_dataset.csv"
                        f"(.zip), a CoNLL file, or a folder holding one")
    if not path.is_dir():
        raise UserError(f"{path}: not a file or folder; pass a corpus file")
    candidates = _corpus_files(path)
    if not candidates:
        raise UserError(f"{path}: no corpus file in this folder; put ner_dataset.csv(.zip) "
                        f"or one .conll/.txt/.csv file in it, or pass the file itself")
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates[:8])
        raise UserError(f"{path}: holds {len(candidates)} corpus files ({names}); pass the "
                        f"one to use as the data path (a corpus's own splits are kept when "
                        f"named train.*, valid.* or dev.*, and test.*)")
    return candidates[0]


def _corpus_files(folder: Path) -> list[Path]:
    """The files of a folder that may be a corpus: not hidden, no README or LICENSE."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".")
        and not p.name.lower().startswith(_NOT_A_CORPUS)
        and (p.name.lower() in CORPUS_NAMES or p.suffix.lower() in CORPUS_SUFFIXES))


def split_of(name: str) -> str | None:
    """The split a file's name says it holds ('train', 'val' or 'test'), else None.

    Only the whole stem counts (train.txt, Dev.conll, valid.csv, test.zip), so that
    train_notes.txt or pretrain.txt are never taken for a split.
    """
    lower = name.lower()
    for suffix in SPLIT_SUFFIXES:
        if lower.endswith(suffix):
            return SPLIT_STEMS.get(lower[:-len(suffix)])
    return None


def locate_split_files(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """A folder's own split files by split, and the other corpus files it holds.

    ({}, []) when no file is named after a split, or the folder's only corpus file is a
    lone valid.* or test.*: the folder then holds one corpus to cut by fractions, as it
    always did (locate_corpus). Two files for one split, or a val or test file beside
    others but without a train file, are refused here, before anything is read, because
    guessing which file is meant would silently change the splits results are compared on.
    """
    folder = Path(folder)
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        split = split_of(p.name)
        if split is not None:
            found.setdefault(split, []).append(p)
    if not found:
        return {}, []
    taken = {p for files in found.values() for p in files}
    others = [p for p in _corpus_files(folder) if p not in taken]
    if "train" not in found and len(taken) == 1 and not others:
        return {}, []  # one corpus that merely has a split's name (dev.txt): cut as always
    for split in SPLIT_ORDER:
        files = found.get(split, [])
        if len(files) > 1:
            names = ", ".join(p.name for p in files[:-1]) + f" and {files[-1].name}"
            every, rest = ("both", "other") if len(files) == 2 else ("all", "others")
            raise UserError(f"{folder}: {names} {every} hold the {split} split; keep one of "
                            f"them in the folder (move the {rest} out)")
    if "train" not in found:
        names = " and ".join(found[s][0].name for s in SPLIT_ORDER if s in found)
        raise UserError(f"{folder}: holds {names} but no train.* file (train.txt, "
                        f"train.conll, train.csv or train.zip); add the corpus's train file, "
                        f"or pass one corpus file itself as the data path")
    return {split: found[split][0] for split in SPLIT_ORDER if split in found}, others


def detect_format(path: Path) -> str:
    """'kaggle' for a zip, a .csv or a Kaggle header on the first line; else 'conll'."""
    path = locate_corpus(path)
    if path.suffix.lower() in (".zip", ".csv"):
        return "kaggle"
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if head.startswith(_ZIP_MAGIC):
        return "kaggle"
    first = head.split(b"\n", 1)[0].decode(KAGGLE_ENCODING, errors="replace")
    names = [cell.strip().lower() for cell in first.lstrip("\ufeff\u00ef\u00bb\u00bf")
             .split(",")]
    if (any(n.startswith("sentence") for n in names) and "word" in names
            and "tag" in names):
        return "kaggle"
    return "conll"


def read_corpus(path: Path, fmt: str = "auto", encoding: str = "utf-8") -> list[Sentence]:
    """Read any supported corpus; an empty one is an error since nothing could be split."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    path = locate_corpus(path)
    if fmt == "auto":
        fmt = detect_format(path)
    sentences = read_kaggle_csv(path) if fmt == "kaggle" else read_conll(path, encoding)
    if not sentences:
        raise UserError(f"{path}: holds no sentences; pass a non-empty corpus")
    return sentences


# ------------------------------------------------------------------------- split files

def clean_token(token: str) -> str:
    """Make a token safe for a space-separated line.

    sentences.txt separates tokens by single spaces, so whitespace inside a token would
    read back as two tokens and shift every later tag by one; "_" keeps the count right.
    An empty token would vanish the same way, so it becomes "_" too, and so does a NUL,
    which would make read_split take the file for UTF-16 or binary.
    """
    return _UNSAFE_IN_TOKEN.sub("_", token) or "_"


def write_split(folder: Path, sentences: list[Sentence]) -> None:
    """Write sentences.txt and labels.txt, one sentence a line, tokens and tags aligned."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text_lines, label_lines = [], []
    for i, (tokens, tags) in enumerate(sentences):
        if not tokens or len(tokens) != len(tags):
            raise ValueError(f"sentence {i}: {len(tokens)} tokens and {len(tags)} tags; "
                             f"need the same non-zero number")
        text_lines.append(" ".join(map(clean_token, tokens)) + "\n")
        label_lines.append(" ".join(map(clean_token, tags)) + "\n")
    for name, lines in ((SENTENCES_FILE, text_lines), (LABELS_FILE, label_lines)):
        with open(folder / name, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)


def _split_lines(file: Path) -> list[str]:
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{file}: missing; run torchstarter build-dataset to create the "
                        f"splits") from None
    except IsADirectoryError:
        raise UserError(f"{file}: is a folder, expected a text file; rebuild the splits "
                        f"with torchstarter build-dataset") from None
    wide = _wide_text(data)
    if wide is not None:
        raise UserError(f"{file}:{wide[0]}: {wide[1]}, not UTF-8 text; save it as UTF-8 or "
                        f"rebuild the splits with torchstarter build-dataset")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{file}:{line}: byte 0x{data[exc.start]:02X} is not UTF-8 text; save "
                        f"it as UTF-8 or rebuild the splits with torchstarter "
                        f"build-dataset") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def read_split(folder: Path) -> list[Sentence]:
    """Read a split written by write_split, checking tokens and tags still line up."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; run torchstarter build-dataset to create "
                        f"the splits")
    sent_file, label_file = folder / SENTENCES_FILE, folder / LABELS_FILE
    sent_lines, label_lines = _split_lines(sent_file), _split_lines(label_file)
    if not sent_lines and not label_lines:
        raise UserError(f"{folder}: empty split ({SENTENCES_FILE} and {LABELS_FILE} hold no "
                        f"sentences); rebuild it with torchstarter build-dataset")
    if len(sent_lines) != len(label_lines):
        raise UserError(f"{sent_file} has {len(sent_lines)} lines but {label_file} has "
                        f"{len(label_lines)}; they must match line for line, rebuild them "
                        f"with torchstarter build-dataset")
    sentences: list[Sentence] = []
    for lineno, (text, labels) in enumerate(zip(sent_lines, label_lines, strict=True),
                                           start=1):
        tokens, tags = text.split(), labels.split()
        if not tokens:
            raise UserError(f"{sent_file}:{lineno}: empty line; every line must hold one "
                            f"sentence, remove it from both files")
        if len(tokens) != len(tags):
            raise UserError(f"{label_file}:{lineno}: {len(tags)} tags but {sent_file}:"
                            f"{lineno} has {len(tokens)} tokens; one tag per token")
        sentences.append((tokens, tags))
    return sentences
