"""Tests for rnnclf.data: every reader (plain and gzip), format detection, every bad-input error, splits."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnclf.data import FORMATS, Examples, detect_format, file_digest, read_examples, stratified_split
from rnnclf.errors import RnnclfError

PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# --- helpers ----------------------------------------------------------------------------------------------


def write(path: Path, content: str | bytes, compress: bool = False) -> Path:
    """Write text (as UTF-8, no newline translation) or bytes, gzip-compressed if asked."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def csv_text(
    rows: list[tuple[str, str]], header: tuple[str, ...] = ("text", "label"), delimiter: str = ","
) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def error_message(path: Path, *, line: int | None = None, **options: str) -> str:
    """read_examples must fail with a one-line RnnclfError naming the file (and the line, when given)."""
    with pytest.raises(RnnclfError) as caught:
        read_examples(path, **options)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert str(path) in message
    if line is not None:
        assert f"line {line}:" in message
    return message


ROWS = [("a good film", "positive"), ("dull, slow", "negative"), ('said "wow"\nthen left', "positive")]


# --- csv / tsv --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, compress", [("d.csv", False), ("d.csv.gz", True), ("d.csv", True)])
def test_csv_plain_gzip_and_gzip_without_gz_name(tmp_path: Path, name: str, compress: bool) -> None:
    path = write(tmp_path / name, csv_text(ROWS), compress)
    examples = read_examples(path)
    assert isinstance(examples, Examples)
    assert examples.texts == [text for text, _ in ROWS]
    assert examples.labels == [label for _, label in ROWS]
    assert examples.source == str(path)
    assert len(examples) == 3


def test_csv_columns_by_name_bom_crlf_blank_lines_and_label_spaces(tmp_path: Path) -> None:
    content = '\ufeffid, review ,sentiment\r\n\r\n1,fine,pos \r\n2,"two\r\nlines",neg\r\n\r\n'
    path = write(tmp_path / "d.csv", content)
    examples = read_examples(path, text_column="review", label_column="sentiment")
    assert examples.texts == ["fine", "two\r\nlines"]
    assert examples.labels == ["pos", "neg"]


@pytest.mark.parametrize("name, compress", [("d.tsv", False), ("d.tab", False), ("d.tsv.gz", True)])
def test_tsv(tmp_path: Path, name: str, compress: bool) -> None:
    rows = [("has, commas", "a"), ("has\ttab", "b")]
    path = write(tmp_path / name, csv_text(rows, delimiter="\t"), compress)
    assert read_examples(path).texts == ["has, commas", "has\ttab"]


def test_five_million_character_document(tmp_path: Path) -> None:
    long_text = "word " * 1_000_000
    path = write(tmp_path / "big.csv", csv_text([(long_text, "x"), ("short", "y")]))
    examples = read_examples(path)
    assert len(examples.texts[0]) == 5_000_000
    assert examples.labels == ["x", "y"]


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "data.dat", csv_text(ROWS))
    assert read_examples(path, format="csv").labels == ["positive", "negative", "positive"]


# --- jsonl ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, compress", [("d.jsonl", False), ("d.ndjson", False), ("d.json", False), ("d.jsonl.gz", True)]
)
def test_jsonl(tmp_path: Path, name: str, compress: bool) -> None:
    lines = [
        json.dumps({"text": "one", "label": "a", "extra": 1}),
        "",
        json.dumps({"text": "two\u2028still two", "label": 3}, ensure_ascii=False),
        json.dumps({"label": True, "text": "three"}),
        "   ",
        json.dumps({"text": "four", "label": 1.5}),
    ]
    path = write(tmp_path / name, "\n".join(lines) + "\n", compress)
    examples = read_examples(path)
    assert examples.texts == ["one", "two\u2028still two", "three", "four"]
    assert examples.labels == ["a", "3", "true", "1.5"]


def test_jsonl_custom_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"body": "x", "cls": false}\n')
    examples = read_examples(path, text_column="body", label_column="cls")
    assert (examples.texts, examples.labels) == (["x"], ["false"])


# --- fastText ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, compress", [("d.txt", False), ("d.ft", False), ("d.fasttext.gz", True)])
def test_fasttext(tmp_path: Path, name: str, compress: bool) -> None:
    content = "__label__pos great movie\r\n\n__label__neg   awful\n__label__neg\n"
    examples = read_examples(write(tmp_path / name, content, compress))
    assert examples.texts == ["great movie", "awful", ""]
    assert examples.labels == ["pos", "neg", "neg"]


def test_fasttext_multi_label_keeps_first_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    content = "__label__a __label__b text one\n__label__c text two\n__label__d __label__e __label__f three\n"
    with caplog.at_level(logging.WARNING, logger="rnnclf"):
        examples = read_examples(write(tmp_path / "d.txt", content))
    assert examples.texts == ["text one", "text two", "three"]
    assert examples.labels == ["a", "c", "d"]
    assert "2 lines with several labels" in caplog.text


# --- folder per class -------------------------------------------------------------------------------------


def make_folder(root: Path) -> Path:
    write(root / "pos" / "b.txt", "second pos")
    write(root / "pos" / "a.txt", "first pos")
    write(root / "neg" / "c.txt.gz", "zipped neg", compress=True)
    write(root / "neg" / ".hidden.txt", "ignored")
    write(root / "neg" / "notes.md", "ignored")
    write(root / ".git" / "x.txt", "ignored")
    write(root / "README.txt", "ignored: not in a class folder")
    return root


def test_folder_per_class(tmp_path: Path) -> None:
    examples = read_examples(make_folder(tmp_path / "data"))
    assert examples.texts == ["zipped neg", "first pos", "second pos"]
    assert examples.labels == ["neg", "pos", "pos"]
    assert read_examples(tmp_path / "data", format="folder").labels == examples.labels


def test_folder_empty_class_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_folder(tmp_path / "data")
    (root / "unsure").mkdir()
    with caplog.at_level(logging.WARNING, logger="rnnclf"):
        examples = read_examples(root)
    assert "unsure" not in examples.labels
    assert "1 class folder without .txt files skipped: 'unsure'" in caplog.text


def test_folder_without_usable_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write(root / "pos" / "a.md", "not a .txt")
    assert "no examples" in error_message(root)


def test_folder_bad_utf8_names_the_document(tmp_path: Path) -> None:
    root = tmp_path / "data"
    bad = write(root / "pos" / "a.txt", b"ok\nbad \xff\n")
    message = error_message(root)
    assert str(bad) in message and "line 2:" in message and "0xff" in message


def test_file_given_for_folder_format_and_folder_for_file_format(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", csv_text(ROWS))
    assert "directory" in error_message(path, format="folder")
    root = make_folder(tmp_path / "data")
    assert "is a directory" in error_message(root, format="csv")


# --- format detection -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("a.csv", "csv"),
        ("a.CSV.GZ", "csv"),
        ("a.tsv", "tsv"),
        ("a.tab.gz", "tsv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson.gz", "jsonl"),
        ("a.json", "jsonl"),
        ("a.txt", "fasttext"),
        ("a.ft", "fasttext"),
        ("a.fasttext.gz", "fasttext"),
    ],
)
def test_detect_format_by_extension(tmp_path: Path, name: str, expected: str) -> None:
    assert detect_format(tmp_path / name) == expected
    assert expected in FORMATS


def test_detect_format_directory_is_folder(tmp_path: Path) -> None:
    assert detect_format(tmp_path) == "folder"


@pytest.mark.parametrize("name", ["a.xml", "a.gz", "noextension"])
def test_detect_format_unknown_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(RnnclfError) as caught:
        detect_format(path)
    message = str(caught.value)
    assert str(path) in message and ".csv" in message and "fasttext" in message and "\n" not in message
    write(path, "x")
    assert ".jsonl" in error_message(path)


# --- errors -----------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in error_message(tmp_path / "nope.csv")


def test_unknown_format_name(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", csv_text(ROWS))
    message = error_message(path, format="xml")
    assert "'xml'" in message and "jsonl" in message


def test_missing_column_lists_columns_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "Text,labels\nx,y\n")
    message = error_message(path)
    assert "'text'" in message and "'Text', 'labels'" in message and "did you mean 'Text'?" in message
    assert "did you mean 'labels'?" in error_message(path, text_column="Text")


def test_tab_separated_file_read_as_csv_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text\tlabel\nx\ty\n")
    assert "format tsv" in error_message(path)


def test_duplicate_header_names(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "\ntext,label,text\nx,y,z\n")
    assert "duplicate" in error_message(path, line=2) and "'text'" in error_message(path)


def test_ragged_row(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'text,label\na,b\n"multi\nline",b\n\nc,d,e\n')
    assert "3 fields but the header has 2" in error_message(path, line=6)
    short = write(tmp_path / "short.csv", "text,label\na,b\nlonely\n")
    assert "1 field but" in error_message(short, line=3)


def test_unclosed_quote_names_the_row_where_it_opened(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'text,label\na,b\n"never closed,b\nmore,c\nstill,d\n')
    assert "unclosed quote" in error_message(path, line=3)


def test_text_after_closing_quote(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'text,label\na,b\n"quoted"tail,c\n')
    assert "quot" in error_message(path, line=3)


@pytest.mark.parametrize("compress", [False, True])
def test_invalid_utf8_line_and_byte(tmp_path: Path, compress: bool) -> None:
    # The column counts characters from the line's start (from 1), in the decompressed text.
    content = b"\xef\xbb\xbftext,label\na,b\nc,d\nd\xc3\xa9j\xc3\x28,e\n"
    path = write(tmp_path / "d.csv", content, compress)
    message = error_message(path, line=4)
    assert "not UTF-8 text (byte 0xc3 at column 4); re-save the file as UTF-8" in message


@pytest.mark.parametrize("name", ["d.jsonl", "d.txt"])
def test_invalid_utf8_in_line_formats(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, b'\xef\xbb\xbf{"text": "a", "label": "b"}\n\x80\n')
    assert "byte 0x80" in error_message(path, line=2)


def test_bom_is_tolerated(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '\ufeff{"text": "a", "label": "b"}\n')
    assert read_examples(path).texts == ["a"]


@pytest.mark.parametrize("data", [b"\x1f\x8bnot really gzip", gzip.compress(b"text,label\na,b\n")[:-6]])
def test_broken_gzip(tmp_path: Path, data: bytes) -> None:
    assert "gzip" in error_message(write(tmp_path / "d.csv", data))


@pytest.mark.parametrize(
    "name, content",
    [("d.csv", ""), ("e.csv", "\n\n"), ("f.csv", "text,label\n\n"), ("g.jsonl", "\n"), ("h.txt", "")],
)
def test_no_examples(tmp_path: Path, name: str, content: str) -> None:
    assert "no examples (empty data set" in error_message(write(tmp_path / name, content))


@pytest.mark.parametrize(
    "name, content, line",
    [
        ("d.csv", "text,label\na,b\nc,\n", 3),
        ("e.csv", "text,label\na,  \n", 2),
        ("f.jsonl", '{"text": "a", "label": "b"}\n{"text": "a", "label": " "}\n', 2),
        ("g.txt", "__label__a x\n__label__ y\n", 2),
    ],
)
def test_empty_label(tmp_path: Path, name: str, content: str, line: int) -> None:
    assert "empty label" in error_message(write(tmp_path / name, content), line=line)


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"text": "a", "label": ', "not valid JSON"),
        ("[1, 2]", "JSON array is not supported"),
        ("[", "JSON array is not supported"),
        ('"just a string"', "expected a JSON object"),
        ('{"txt": "a", "label": "b"}', "did you mean 'txt'?"),
        ('{"text": "a"}', "no label field 'label'"),
        ('{"text": 5, "label": "b"}', "must be a string, got a number"),
        ('{"text": null, "label": "b"}', "got null"),
        ('{"text": "a", "label": null}', "got null"),
        ('{"text": "a", "label": ["b"]}', "got an array"),
        ("1" * 5000, "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
)
def test_jsonl_bad_lines(tmp_path: Path, line: str, expected: str) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": "ok", "label": "b"}\n\n' + line + "\n")
    assert expected in error_message(path, line=3)


def test_fasttext_line_without_label(tmp_path: Path) -> None:
    path = write(tmp_path / "d.txt", "__label__a fine\n\nno label here\n")
    assert "__label__" in error_message(path, line=3)


def test_directory_given_for_a_file_format(tmp_path: Path) -> None:
    folder = tmp_path / "looks.csv"
    folder.mkdir()
    assert "directory" in error_message(folder, format="csv")


def test_quotes_in_messages_stay_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", '"te\nxt",label\na,b\n')
    assert "'te\\nxt'" in error_message(path)


# --- warnings ---------------------------------------------------------------------------------------------


def test_empty_documents_are_kept_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "d.csv", csv_text([("", "a"), ("  \n ", "b"), ("fine", "a"), ("", "b")]))
    with caplog.at_level(logging.WARNING, logger="rnnclf"):
        examples = read_examples(path)
    assert len(examples) == 4
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"{path}: 3 empty documents kept (they become a single unknown token)" == warnings[0].getMessage()


def test_no_warning_for_clean_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rnnclf"):
        read_examples(write(tmp_path / "d.csv", csv_text(ROWS)))
    assert caplog.records == []


# --- stratified split -------------------------------------------------------------------------------------


def test_split_is_stratified_disjoint_complete_and_sorted() -> None:
    labels = ["a"] * 100 + ["b"] * 50 + ["c"] * 10
    train, valid = stratified_split(labels, 0.2, seed=7)
    assert sorted(train + valid) == list(range(len(labels)))
    assert not set(train) & set(valid)
    assert train == sorted(train) and valid == sorted(valid)
    assert Counter(labels[i] for i in valid) == {"a": 20, "b": 10, "c": 2}


def test_split_is_deterministic_per_seed() -> None:
    labels = [str(i % 3) for i in range(300)]
    assert stratified_split(labels, 0.1, seed=1) == stratified_split(labels, 0.1, seed=1)
    assert stratified_split(labels, 0.1, seed=1) != stratified_split(labels, 0.1, seed=2)


def test_split_small_classes(caplog: pytest.LogCaptureFixture) -> None:
    labels = ["big"] * 20 + ["pair", "pair", "one"]
    with caplog.at_level(logging.WARNING, logger="rnnclf"):
        train, valid = stratified_split(labels, 0.01, seed=0)
    counts = Counter(labels[i] for i in valid)
    assert counts == {"big": 1, "pair": 1}  # at least one of a class of two, none of a class of one
    assert "one" in [labels[i] for i in train]
    assert "1 class has a single example" in caplog.text


def test_split_never_takes_a_whole_class() -> None:
    labels = ["a", "a", "b", "b", "b"]
    train, valid = stratified_split(labels, 0.9, seed=0)
    assert {labels[i] for i in train} == {"a", "b"}
    assert Counter(labels[i] for i in valid) == {"a": 1, "b": 2}


def test_split_fraction_zero_and_invalid() -> None:
    assert stratified_split(["a", "b", "a"], 0.0, seed=0) == ([0, 1, 2], [])
    for fraction in (-0.1, 1.0, 2.0, float("nan")):
        with pytest.raises(RnnclfError):
            stratified_split(["a", "b"], fraction, seed=0)


# --- digest -----------------------------------------------------------------------------------------------


def test_file_digest_of_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv.gz", csv_text(ROWS), compress=True)
    assert file_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_digest_of_a_folder_follows_the_documents(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    before = file_digest(root)
    assert file_digest(root) == before
    write(root / "README.md", "unrelated files do not change the key")
    assert file_digest(root) == before
    write(root / "pos" / "a.txt", "changed")
    changed = file_digest(root)
    assert changed != before
    (root / "pos" / "a.txt").rename(root / "pos" / "z.txt")
    assert file_digest(root) != changed


def test_file_digest_missing(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError, match="no such file"):
        file_digest(tmp_path / "nope.csv")


# --- properties -------------------------------------------------------------------------------------------


def expected_examples(rows: list[tuple[str, str]]) -> tuple[list[str], list[str]] | None:
    """What reading rows back should give, or None where an RnnclfError is the right answer."""
    if not rows or any(not label.strip() for _, label in rows):
        return None
    return [text for text, _ in rows], [label.strip() for _, label in rows]


def assert_round_trip(path: Path, rows: list[tuple[str, str]]) -> None:
    expected = expected_examples(rows)
    if expected is None:
        error_message(path)
        return
    examples = read_examples(path)
    assert (examples.texts, examples.labels) == expected


ROW_LISTS = st.lists(st.tuples(st.text(), st.text(min_size=1)), max_size=8)


@PROPERTY_SETTINGS
@given(rows=ROW_LISTS, delimiter=st.sampled_from([",", "\t"]), compress=st.booleans())
def test_property_csv_and_tsv_round_trip(
    tmp_path: Path, rows: list[tuple[str, str]], delimiter: str, compress: bool
) -> None:
    name = "p.csv" if delimiter == "," else "p.tsv"
    path = write(tmp_path / name, csv_text(rows, delimiter=delimiter), compress)
    assert_round_trip(path, rows)


@PROPERTY_SETTINGS
@given(rows=ROW_LISTS, ascii_only=st.booleans())
def test_property_jsonl_round_trip(tmp_path: Path, rows: list[tuple[str, str]], ascii_only: bool) -> None:
    lines = [json.dumps({"text": text, "label": label}, ensure_ascii=ascii_only) for text, label in rows]
    path = write(tmp_path / "p.jsonl", "\n".join(lines))
    assert_round_trip(path, rows)


ANY_CONTENT = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda data: b"\x1f\x8b" + data),
    st.binary(max_size=200).map(gzip.compress),
    st.text(max_size=200).map(str.encode),
    st.text(alphabet='{}[]":,\\ \n\r\t"_labeltx1\x00\xff', max_size=200).map(str.encode),
)


@PROPERTY_SETTINGS
@given(data=ANY_CONTENT, name=st.sampled_from(["p.csv", "p.tsv", "p.jsonl", "p.txt", "folder"]))
def test_property_any_bytes_raise_only_rnnclf_error(tmp_path: Path, data: bytes, name: str) -> None:
    path = tmp_path / "folder" if name == "folder" else tmp_path / name
    write(path / "class" / "doc.txt" if name == "folder" else path, data)
    try:
        examples = read_examples(path)
    except RnnclfError as error:
        assert "\n" not in str(error) and "\r" not in str(error)
    else:
        assert len(examples.texts) == len(examples.labels) > 0
