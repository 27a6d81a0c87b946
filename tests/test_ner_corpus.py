import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchstarter.errors import UserError
from torchstarter.tasks.ner.corpus import (
    clean_token,
    detect_format,
    locate_corpus,
    read_conll,
    read_corpus,
    read_kaggle_csv,
    read_split,
    write_split,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src" / "torchstarter" / "tasks" / "ner" / "sample" / "ner_sample.csv"
KAGGLE_ZIP = REPO.parent / "shared" / "data" / "kaggle_ner" / "ner_dataset.csv.zip"
ENTITY_TYPES = ("geo", "gpe", "per", "org", "tim", "art", "eve", "nat")

HEADER = b"Sentence #,Word,POS,Tag\r\n"
TWO_SENTENCES = (HEADER
                 + b"Sentence: 1,Rain,NN,O\r\n,hit,VBD,O\r\n,Lima,NNP,B-geo\r\n,.,.,O\r\n"
                 + b"Sentence: 2,John,NNP,B-per\r\n,Smith,NNP,I-per\r\n,left,VBD,O\r\n")
TWO_SENTENCES_READ = [(["Rain", "hit", "Lima", "."], ["O", "O", "B-geo", "O"]),
                      (["John", "Smith", "left"], ["B-per", "I-per", "O"])]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------- Kaggle CSV

def test_kaggle_rows_group_into_sentences_and_the_last_sentence_is_kept(tmp_path):
    assert read_kaggle_csv(write(tmp_path / "n.csv", TWO_SENTENCES)) == TWO_SENTENCES_READ


def test_kaggle_last_sentence_is_kept_without_a_final_newline(tmp_path):
    path = write(tmp_path / "n.csv", TWO_SENTENCES.rstrip(b"\r\n"))
    assert read_kaggle_csv(path)[-1] == (["John", "Smith", "left"], ["B-per", "I-per", "O"])


def test_kaggle_windows_1252_bytes_decode_to_their_characters(tmp_path):
    data = HEADER + b"Sentence: 1,Caf\xe9,NNP,B-org\r\n,\x93hi\x94,NN,O\r\n,\x80,$,O\r\n"
    assert read_kaggle_csv(write(tmp_path / "n.csv", data)) == [
        (["Caf\u00e9", "\u201chi\u201d", "\u20ac"], ["B-org", "O", "O"])]


def test_kaggle_quoted_comma_and_quote_tokens_are_single_words(tmp_path):
    data = HEADER + b'Sentence: 1,"10,000",CD,O\r\n,",",",",O\r\n,"""",``,O\r\n'
    assert read_kaggle_csv(write(tmp_path / "n.csv", data)) == [
        (["10,000", ",", '"'], ["O", "O", "O"])]


def test_kaggle_pos_column_is_optional_and_blank_rows_are_ignored(tmp_path):
    data = b"Sentence #,Word,Tag\n\nSentence: 1,Hi,O\n,,\n,there,O\n\n\n"
    assert read_kaggle_csv(write(tmp_path / "n.csv", data)) == [(["Hi", "there"], ["O", "O"])]


def test_kaggle_utf8_file_with_byte_order_mark_is_read_as_utf8(tmp_path):
    data = b"\xef\xbb\xbf" + HEADER + "Sentence: 1,Café,NNP,B-geo\n".encode()
    assert read_kaggle_csv(write(tmp_path / "n.csv", data)) == [(["Café"], ["B-geo"])]


def test_kaggle_zip_reads_the_same_sentences_as_the_csv(tmp_path):
    archive = tmp_path / "ner_dataset.csv.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ner_dataset.csv", TWO_SENTENCES)
        zf.writestr("notes/readme.md", b"not a csv")
    assert read_kaggle_csv(archive) == TWO_SENTENCES_READ
    assert list(tmp_path.iterdir()) == [archive]  # nothing was unpacked beside it


@pytest.mark.parametrize("members", [[], ["a.csv", "b.csv"]])
def test_a_zip_without_exactly_one_csv_is_a_user_error(tmp_path, members):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", b"x")
        for name in members:
            zf.writestr(name, TWO_SENTENCES)
    with pytest.raises(UserError, match="exactly one .csv") as exc:
        read_kaggle_csv(archive)
    assert str(archive) in one_line(exc)


def test_a_damaged_zip_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a readable zip") as exc:
        read_kaggle_csv(write(tmp_path / "bad.zip", b"PK\x03\x04 this is not a zip"))
    assert "bad.zip" in one_line(exc)


@pytest.mark.parametrize("data, line, words", [
    (b"", None, "empty file"),
    (b"\n\n", None, "empty file"),
    (b"id,token,label\n", 1, "'id', 'token', 'label'"),
    (b"\nSentence #,Word,POS\n", 2, "'Sentence #', 'Word', 'POS'"),
    (HEADER, None, "no data rows"),
    (HEADER + b",Rain,NN,O\r\n", 2, "before any sentence marker"),
    (HEADER + b"Sentence: 1,Rain,NN,O\r\n,,NN,O\r\n", 3, "no word"),
    (HEADER + b"Sentence: 1,Rain,NN,O\r\n,hit,VBD,\r\n", 3, "no tag"),
    (HEADER + b"Sentence: 1,Rain,NN\r\n", 2, "no tag"),
    (HEADER + b"Sentence: 1,Rain,NN,O\r\n,b\x81d,NN,O\r\n", 3, "byte 0x81 is not windows-1252"),
    (HEADER + b'Sentence: 1,"Rain,NN,O\r\n,hit,VBD,O\r\n', 2, "unclosed quote"),
    (HEADER + b"Sentence: 1,Rain,NN,O\r\n,a" + b"x" * 200_000 + b",NN,O\r\n", 3,
     "not CSV text"),
])
def test_each_kaggle_mistake_is_a_one_line_user_error_naming_file_and_line(
        tmp_path, data, line, words):
    path = write(tmp_path / "n.csv", data)
    with pytest.raises(UserError) as exc:
        read_kaggle_csv(path)
    message = one_line(exc)
    assert words in message
    assert message.startswith(f"{path}:{line}:" if line else f"{path}:")


def test_a_decode_error_deep_in_a_large_file_names_its_exact_line(tmp_path):
    rows = b"".join(b"Sentence: %d,w%d,NN,O\r\n" % (i, i) for i in range(20000))
    path = write(tmp_path / "n.csv", HEADER + rows + b"Sentence: x,\x8d,NN,O\r\n")
    with pytest.raises(UserError, match=rf"^{path}:20002: byte 0x8D"):
        read_kaggle_csv(path)


def test_an_error_inside_a_zip_names_the_archive_member_and_line(tmp_path):
    archive = tmp_path / "n.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ner_dataset.csv", HEADER + b",Rain,NN,O\r\n")
    with pytest.raises(UserError, match=rf"^{archive}:ner_dataset.csv:2: data row before"):
        read_kaggle_csv(archive)


# ------------------------------------------------------------------------------ CoNLL

CONLL = "EU NNP B-ORG\nrejects VBZ O\n\nPeter B-PER\nBlackburn I-PER\n"


@pytest.mark.parametrize("ending", ["", "\n", "\n\n\n"])
def test_conll_last_sentence_is_kept_with_or_without_trailing_blank_lines(tmp_path, ending):
    path = tmp_path / "c.conll"
    path.write_text(CONLL.rstrip("\n") + ending)
    assert read_conll(path) == [(["EU", "rejects"], ["B-ORG", "O"]),
                                (["Peter", "Blackburn"], ["B-PER", "I-PER"])]


def test_conll_takes_token_from_first_and_tag_from_last_column(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("EU NNP B-NP B-ORG\nrejects\tVBZ\tB-VP\tO\n")
    assert read_conll(path) == [(["EU", "rejects"], ["B-ORG", "O"])]


def test_conll_docstart_lines_are_skipped_and_crlf_and_bom_are_fine(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"\xef\xbb\xbf-DOCSTART- -X- -X- O\r\n\r\nEU B-ORG\r\n-DOCSTART- O\r\n"
                     b"Peter B-PER\r\n")
    assert read_conll(path) == [(["EU"], ["B-ORG"]), (["Peter"], ["B-PER"])]


def test_conll_line_with_one_column_is_a_user_error_naming_file_and_line(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("EU B-ORG\n\nPeter B-PER\nBlackburn\n")
    with pytest.raises(UserError, match="one column") as exc:
        read_conll(path)
    assert one_line(exc).startswith(f"{path}:4:")


def test_conll_decode_error_names_file_line_and_suggests_the_encoding(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"EU B-ORG\n\nCaf\xe9 B-LOC\n")
    with pytest.raises(UserError, match="windows-1252") as exc:
        read_conll(path)
    assert one_line(exc).startswith(f"{path}:3:")
    assert read_conll(path, encoding="cp1252") == [(["EU"], ["B-ORG"]), (["Café"], ["B-LOC"])]


def test_conll_missing_file_and_unknown_encoding_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_conll(tmp_path / "none.txt")
    path = tmp_path / "c.txt"
    path.write_text(CONLL)
    with pytest.raises(UserError, match="unknown encoding"):
        read_conll(path, encoding="klingon")


# ------------------------------------------------------------- detecting and locating

def test_format_is_detected_from_suffix_and_first_line(tmp_path):
    assert detect_format(write(tmp_path / "a.csv", b"anything")) == "kaggle"
    assert detect_format(write(tmp_path / "a.zip", b"anything")) == "kaggle"
    assert detect_format(write(tmp_path / "k.txt", TWO_SENTENCES)) == "kaggle"
    assert detect_format(write(tmp_path / "c.txt", CONLL.encode())) == "conll"
    assert detect_format(write(tmp_path / "c.conll", b"")) == "conll"


def test_read_corpus_accepts_a_folder_holding_one_corpus_file(tmp_path):
    write(tmp_path / "ner_dataset.csv", TWO_SENTENCES)
    write(tmp_path / "README.txt", b"notes, not a corpus")
    write(tmp_path / "labels.json", b"{}")
    assert locate_corpus(tmp_path) == tmp_path / "ner_dataset.csv"
    assert read_corpus(tmp_path) == TWO_SENTENCES_READ


def test_read_corpus_format_can_be_forced(tmp_path):
    path = write(tmp_path / "c.csv", CONLL.encode())
    with pytest.raises(UserError, match="header has columns"):
        read_corpus(path)
    assert len(read_corpus(path, "conll")) == 2
    with pytest.raises(UserError, match="--format 'xml'"):
        read_corpus(path, "xml")


@pytest.mark.parametrize("files, words", [
    ([], "no corpus file"),
    (["ner_dataset.csv", "ner_dataset.csv.zip"], "holds 2 corpus files"),
    (["train.txt", "test.txt"], "holds 2 corpus files"),
])
def test_a_folder_without_exactly_one_corpus_file_is_a_user_error(tmp_path, files, words):
    for name in files:
        write(tmp_path / name, TWO_SENTENCES)
    with pytest.raises(UserError, match=words) as exc:
        read_corpus(tmp_path)
    assert one_line(exc).startswith(f"{tmp_path}:")


def test_a_missing_path_or_empty_corpus_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        read_corpus(tmp_path / "missing")
    with pytest.raises(UserError, match="holds no sentences"):
        read_corpus(write(tmp_path / "c.conll", b"\n\n-DOCSTART- O\n"))


# ---------------------------------------------------------------------- split files

def test_split_files_are_one_sentence_a_line_and_read_back(tmp_path):
    folder = tmp_path / "train"
    write_split(folder, TWO_SENTENCES_READ)
    assert (folder / "sentences.txt").read_text() == "Rain hit Lima .\nJohn Smith left\n"
    assert (folder / "labels.txt").read_text() == "O O B-geo O\nB-per I-per O\n"
    assert read_split(folder) == TWO_SENTENCES_READ


def test_whitespace_inside_a_token_becomes_underscore_so_tags_stay_aligned(tmp_path):
    write_split(tmp_path, [(["New York", "a\tb", "x\u00a0y"], ["B-geo", "O", "O"])])
    assert read_split(tmp_path) == [(["New_York", "a_b", "x_y"], ["B-geo", "O", "O"])]


@pytest.mark.parametrize("sentences, labels, words, where", [
    (None, None, "no such folder", ""),
    ("a b\n", None, "labels.txt: missing", "labels.txt"),
    ("", "", "empty split", ""),
    (b"a \xff\n", "O O\n", "not UTF-8", "sentences.txt:1"),
    ("a b\nc\n", "O O\n", "has 2 lines but", "sentences.txt"),
    ("a b\nc d\n", "O O\nO\n", "1 tags but", "labels.txt:2"),
    ("a b\n\n", "O O\n\n", "empty line", "sentences.txt:2"),
])
def test_each_split_mistake_is_a_user_error_naming_the_file(
        tmp_path, sentences, labels, words, where):
    folder = tmp_path / "val"
    if sentences is not None:
        folder.mkdir()
        for name, content in (("sentences.txt", sentences), ("labels.txt", labels)):
            if content is not None:
                data = content if isinstance(content, bytes) else content.encode()
                (folder / name).write_bytes(data)
    with pytest.raises(UserError, match=words) as exc:
        read_split(folder)
    message = one_line(exc)
    assert message.startswith(f"{folder / where}" if where else f"{folder}")
    if sentences is None or words.startswith("labels.txt"):
        assert "build-dataset" in message


def test_line_count_mismatch_names_both_files_and_counts(tmp_path):
    (tmp_path / "sentences.txt").write_text("a\nb\nc\n")
    (tmp_path / "labels.txt").write_text("O\n")
    with pytest.raises(UserError) as exc:
        read_split(tmp_path)
    message = one_line(exc)
    assert f"{tmp_path / 'sentences.txt'} has 3 lines" in message
    assert f"{tmp_path / 'labels.txt'} has 1" in message


# ------------------------------------------------------------------ property tests

def _is_sentences(result) -> bool:
    return isinstance(result, list) and all(
        len(tokens) == len(tags) > 0 and all(tokens) and all(tags) for tokens, tags in result)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_as_a_conll_file_gives_sentences_or_a_user_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.txt"
        path.write_bytes(text.encode("utf-8"))
        try:
            result = read_conll(path)
        except UserError as exc:
            assert "\n" not in str(exc)
        else:
            assert _is_sentences(result)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["", "Sentence #,Word,POS,Tag\n", "Sentence #,Word,Tag\r\n"]),
       st.text(max_size=300), st.sampled_from(["utf-8", "latin-1"]))
def test_any_text_as_a_kaggle_csv_gives_sentences_or_a_user_error(header, text, encoding):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.csv"
        path.write_bytes((header + text).encode(encoding, errors="replace"))
        try:
            result = read_kaggle_csv(path)
        except UserError as exc:
            assert "\n" not in str(exc)
        else:
            assert _is_sentences(result)


pairs = st.lists(st.tuples(st.text(max_size=8), st.text(max_size=5)), min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(st.lists(pairs, min_size=1, max_size=6))
def test_write_split_then_read_split_round_trips_any_tokens(sentences):
    sentences = [([t for t, _ in s], [g for _, g in s]) for s in sentences]
    with tempfile.TemporaryDirectory() as tmp:
        write_split(Path(tmp), sentences)
        assert read_split(Path(tmp)) == [([clean_token(t) for t in tokens],
                                          [clean_token(g) for g in tags])
                                         for tokens, tags in sentences]


@given(st.text(max_size=20))
def test_a_cleaned_token_is_one_nonempty_whitespace_free_word(token):
    assert clean_token(token).split() == [clean_token(token)]


# -------------------------------------------------------------------- shipped sample

def test_shipped_sample_is_a_kaggle_csv_with_every_entity_type():
    assert SAMPLE.read_bytes().decode("ascii")  # plain ASCII, so valid windows-1252 too
    sentences = read_corpus(SAMPLE)
    assert len(sentences) >= 70
    assert all(5 <= len(tokens) <= 30 for tokens, _ in sentences)
    tags = {tag for _, sentence_tags in sentences for tag in sentence_tags}
    for kind in ENTITY_TYPES:
        assert f"B-{kind}" in tags
    assert sum(tag.startswith("I-") for _, ts in sentences for tag in ts) >= 20
    for _, sentence_tags in sentences:  # BIO: an I- tag continues an entity of its type
        for prev, tag in zip(["O", *sentence_tags], sentence_tags, strict=False):
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:], sentence_tags


@pytest.mark.skipif(not KAGGLE_ZIP.is_file(),
                    reason=f"real Kaggle NER data not present at {KAGGLE_ZIP}")
def test_real_kaggle_zip_has_all_sentences_and_tokens():
    sentences = read_corpus(KAGGLE_ZIP)
    assert len(sentences) == 47959
    assert sum(len(tokens) for tokens, _ in sentences) == 1048575
    tags = {tag for _, sentence_tags in sentences for tag in sentence_tags}
    assert len(tags) == 17
    assert {t[2:] for t in tags if t != "O"} == set(ENTITY_TYPES)
