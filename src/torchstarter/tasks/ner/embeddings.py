"""Pretrained word vectors (GloVe, word2vec or fastText text files) for the NER tagger.

Three steps, split so that evaluate and predict never need the vectors file:
  describe   (describe_data, at train start) finds the file, reads it, matches it
             against the vocabulary, maybe extends the vocabulary, and records what it
             found in data_info["embeddings"] (with the file's sha256), which every
             checkpoint keeps;
  initialize (the task's initialize_model hook, when training builds its model) reads
             the file again, checks it is the one described, and copies the vectors into
             the embedding rows;
  evaluate / predict rebuild the model from data_info, and the checkpoint's weights
             hold the vectors: the file is not read again.

The file: one word a line followed by its numbers, separated by spaces; an optional
first line "count dim" (what word2vec and fastText write); gzip-compressed or not; UTF-8.
A word may match a vocabulary word as written, else in lowercase (GloVe is lowercase).
"""

from __future__ import annotations

import array
import gzip
import hashlib
import io
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from torchstarter.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
FIRST_WORD_ID = 2  # ids 0 and 1 are <pad> and UNK: never given a pretrained vector

# Resolved path of each file describe() found, by (name as given, sha256), so that
# initialize() finds a relative name the same way without knowing the data dir.
_FOUND: dict[tuple[str, str], Path] = {}


@dataclass
class Vectors:
    """What one pass over a vectors file kept.

    `index` maps each kept word to its row (first occurrence wins, file order);
    `folded` maps a lowercased form to the row of the first kept word with that form;
    `rows` is [len(index), dim] float32, or None when the values were only checked.
    """

    index: dict[str, int]
    folded: dict[str, int]
    rows: torch.Tensor | None
    lines: int  # vector lines of the file, repeated words included
    dim: int
    sha256: str

    def lookup(self, word: str) -> int | None:
        """The row for a vocabulary word: the same string, else its lowercased form, else
        the first word of the file that lowercases to that form ("Paris" for "PARIS")."""
        row = self.index.get(word)
        if row is None:
            low = word.lower()
            row = self.index.get(low)
            if row is None:
                row = self.folded.get(low)
        return row


class _Hashing(io.RawIOBase):
    """A raw reader that hashes every byte it passes on (the file as stored, .gz or not)."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)
        if n:
            self.hash.update(memoryview(buffer)[:n])
        return n or 0


def resolve(name: str, data_dir: Path | None) -> Path:
    """The file `name` names: as given when absolute, else from the current folder, then
    from the data dir. Missing: one line saying where it looked."""
    given = Path(name).expanduser()
    places = [given] if given.is_absolute() else \
        [Path.cwd() / given] + ([Path(data_dir) / given] if data_dir is not None else [])
    for place in places:
        if place.is_file():
            return place
        if place.is_dir():
            raise UserError(f"key 'embeddings_file' {name!r}: {place} is a folder; give the "
                            f"vectors file itself")
    raise UserError(f"key 'embeddings_file' {name!r}: not found (looked for "
                    f"{' and '.join(str(p) for p in places)}); give its path, absolute or "
                    f"relative to the current folder or the data dir")


def read_vectors(path: Path, dim: int, keep: Callable[[str], bool] | None = None,
                 values: bool = True, check_all: bool = True) -> Vectors:
    """Read a vectors file once, streaming, keeping only the words `keep` accepts (all
    when None) and, when `values`, their vectors.

    With `check_all`, every value is checked even for the words not kept, so a broken file
    fails here, in one line naming file:line, before any training; without it, the lines
    of words not kept are only counted (for a caller that checked these very bytes before,
    as its sha256 will show), which makes the pass several times faster. A word holding
    spaces (a few lines of glove.840B) can match no token, so its line is skipped.
    """
    where = str(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below, after the hash is complete
    except OSError as exc:
        raise UserError(f"{where}: cannot read the vectors file ({exc.strerror})") from None
    with raw:
        hashing = _Hashing(raw)
        buffered = io.BufferedReader(hashing, 1 << 20)
        try:
            gz = buffered.peek(2)[:2] == GZIP_MAGIC
            stream: IO[bytes] = gzip.GzipFile(fileobj=buffered) if gz else buffered
            found = _parse(_numbered(stream, where), where, dim, keep, values, check_all)
            while hashing.read(1 << 20):  # what gzip left unread still counts in the hash
                pass
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise UserError(f"{where}: not a readable gzip file ({exc}); download it "
                            f"again") from None
        except OSError as exc:
            raise UserError(f"{where}: cannot read the vectors file ({exc.strerror or exc})"
                            ) from None
    index, folded, rows, lines = found
    return Vectors(index, folded, rows, lines, dim, hashing.hash.hexdigest())


def _numbered(stream: IO[bytes], where: str) -> Iterator[tuple[int, str]]:
    """(line number, the line) for every line, decoded as UTF-8."""
    for lineno, line in enumerate(stream, start=1):
        try:
            text = line.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{where}:{lineno}: not UTF-8 text; the vectors file must be "
                            f"text lines 'word v1 v2 ...' in UTF-8 (convert a binary "
                            f"word2vec .bin to text first)") from None
        yield lineno, text


FLOAT32_MAX = 3.4028234663852886e38
MAX_LINE_CHARS = 1 << 20  # 1 MB: 25,000 values of 40 characters; a longer line is damage


def _fields(text: str, maxsplit: int = -1) -> list[str]:
    """A line's fields split on ASCII spaces and tabs only, as word2vec, GloVe and fastText
    write them: a word may hold a no-break space or another Unicode space."""
    return [f for f in text.rstrip("\r\n").replace("\t", " ").split(" ", maxsplit) if f]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse(lines: Iterable[tuple[int, str]], where: str, dim: int,
           keep: Callable[[str], bool] | None, values: bool, check_all: bool
           ) -> tuple[dict[str, int], dict[str, int], torch.Tensor | None, int]:
    index: dict[str, int] = {}
    folded: dict[str, int] = {}
    flat = array.array("f")
    header: int | None = None
    count = 0
    for lineno, text in lines:
        if not check_all and lineno > 1 and keep is not None:
            head = _fields(text, 1)
            if head and not keep(head[0]):
                count += 1  # a vector line, checked by an earlier pass over these bytes
                continue
        if len(text) > MAX_LINE_CHARS:
            raise UserError(f"{where}:{lineno}: a line of {len(text):,} characters, far more "
                            f"than a word and {dim} numbers; the file is damaged or not a "
                            f"vectors file")
        fields = _fields(text)
        if not fields:
            continue  # blank lines (a trailing one) carry nothing
        if lineno == 1 and len(fields) == 2 and all(f.isascii() and f.isdigit()
                                                     for f in fields):
            header, header_dim = int(fields[0]), int(fields[1])
            if header_dim != dim:
                raise UserError(f"{where}:1: the header says vectors of {header_dim} values, "
                                f"but embedding_dim is {dim}; set embedding_dim to "
                                f"{header_dim} in params.json")
            continue
        word = fields[0]
        n = len(fields) - 1
        if n != dim:
            spaced = n > dim and not any(_is_number(f) for f in fields[1:len(fields) - dim])
            if not spaced:
                if count == 0 and header is None:
                    raise UserError(f"{where}:{lineno}: vectors of {n} values, but "
                                    f"embedding_dim is {dim}; set embedding_dim to {n} in "
                                    f"params.json")
                raise UserError(f"{where}:{lineno}: {n} values after the word, the vectors "
                                f"have {dim}; a broken line (a cut-short download?): each "
                                f"line is a word and {dim} numbers, fix or remove it")
            word = ""  # a word holding spaces: no token has one
        row = _numbers(fields[len(fields) - dim:], where, lineno)
        count += 1
        if not word or word in index or (keep is not None and not keep(word)):
            continue  # the first of repeated words wins
        index[word] = len(index)
        folded.setdefault(word.lower(), index[word])
        if values:
            flat.extend(row)
    if count == 0:
        raise UserError(f"{where}: holds no word vectors (empty, or a header only); give a "
                        f"file of 'word v1 v2 ...' lines")
    if header is not None and header != count:
        raise UserError(f"{where}:1: the header says {header} vectors but the file holds "
                        f"{count}; it may be cut short: download it again (or fix the header "
                        f"if you trimmed the file)")
    rows = None
    if values:
        rows = torch.frombuffer(flat, dtype=torch.float32).reshape(len(index), dim).clone() \
            if index else torch.zeros(0, dim)
    return index, folded, rows, count


def _numbers(texts: list[str], where: str, lineno: int) -> list[float]:
    """The line's values as floats; a non-number or a non-finite one is refused."""
    try:
        row = [float(t) for t in texts]
    except ValueError:
        bad = next(t for t in texts if not _is_number(t))
        raise UserError(f"{where}:{lineno}: {bad!r} is not a number; each line is a word and "
                        f"its numbers, separated by spaces: fix or remove the line") from None
    if not all(abs(v) <= FLOAT32_MAX for v in row):  # NaN, infinity, or inf as float32
        bad = next(t for t, v in zip(texts, row, strict=True) if not abs(v) <= FLOAT32_MAX)
        raise UserError(f"{where}:{lineno}: {bad!r} is not a finite number (as float32); fix "
                        f"or remove the line")
    return row


# ---- describe: what a vocabulary finds in a file -----------------------------------------

def wanted(words: list[str]) -> Callable[[str], bool]:
    """Whether a file word can give a vector to one of `words` (Vectors.lookup's rules)."""
    lows = {w.lower() for w in words}
    exact = set(words)
    return lambda word: word in exact or word.lower() in lows


def extension(words: list[str], vectors: Vectors, lowercase: bool) -> list[str]:
    """The file's words the vocabulary lacks, in file order, in the vocabulary's case
    mode (lowercased for a lowercase vocabulary); never <pad> or UNK themselves."""
    have = set(words)
    added = []
    for word in vectors.index:
        form = word.lower() if lowercase else word
        if form not in have:
            have.add(form)
            added.append(form)
    return added


def matched_ids(words: list[str], vectors: Vectors) -> dict[int, int]:
    """Vocabulary id -> row of `vectors`, for the words with a vector (not <pad>, UNK)."""
    found = {}
    for i in range(FIRST_WORD_ID, len(words)):
        row = vectors.lookup(words[i])
        if row is not None:
            found[i] = row
    return found


def remember(name: str, sha256: str, path: Path) -> None:
    """Where describe found the file, for initialize in the same process."""
    _FOUND[(name, sha256)] = path


def ratio(part: int, whole: int) -> float:
    """part / whole, 0.0 when nothing was counted (as the engine reports an empty ratio)."""
    return part / whole if whole else 0.0


# ---- initialize: the vectors into a model's embedding --------------------------------------

def initialize(embedding: torch.nn.Embedding, words: list[str], info: dict[str, Any],
               dim: int) -> int:
    """Copy the vectors of the described file into `embedding`'s rows; returns how many.

    The file is read again (keeping only the vocabulary's vectors) and must be the one
    describe() hashed; rows of words without a vector keep their random start, and the
    <pad> row stays zero.
    """
    name, sha = info["file"], info["sha256"]
    path = _FOUND.get((name, sha)) or resolve(name, None)
    vectors = read_vectors(path, dim, wanted(words[FIRST_WORD_ID:]), check_all=False)
    if vectors.sha256 != sha:
        raise UserError(f"{path}: changed since the data was described (sha256 "
                        f"{vectors.sha256[:12]}..., expected {sha[:12]}...); rerun train "
                        f"with the file unchanged")
    if tuple(embedding.weight.shape) != (len(words), dim):
        raise UserError(f"the model's word embedding is {tuple(embedding.weight.shape)}, but "
                        f"the vocabulary and embedding_dim make ({len(words)}, {dim}); "
                        f"build_model must size it from data_info['words']")
    found = matched_ids(words, vectors)
    if found:
        assert vectors.rows is not None
        ids = torch.tensor(list(found), dtype=torch.long)
        rows = vectors.rows[torch.tensor(list(found.values()), dtype=torch.long)]
        with torch.no_grad():
            weight = embedding.weight
            weight[ids.to(weight.device)] = rows.to(weight.device, weight.dtype)
    return len(found)
