"""Texts without labels (data.unlabeled), for language-model pretraining.

    .txt (or .txt.gz)          one document per line; leading fastText __label__ words are dropped, so a
                               labeled fastText file can serve as unlabeled text
    csv / tsv / jsonl / parquet  the text_column of each row (a label column may be there; it is ignored)

Blank lines and empty texts are skipped. Errors are one line naming the file (and line), as for labeled data.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rnnclf.data.delimited import allow_huge_fields
from rnnclf.data.formats import detect_format
from rnnclf.data.source import data_error, decode, display_name, quote, read_bytes


def read_texts(path: str | Path, text_column: str = "text") -> list[str]:
    """The non-empty documents of an unlabeled file; RnnclfError (one line) for bad input."""
    path = Path(path)
    source = display_name(path)
    if not path.is_file():
        raise data_error(source, "no such file (data.unlabeled)" if not path.exists() else "is not a file")
    format = detect_format(path)
    data = read_bytes(path, source)
    if format == "parquet":
        texts = _parquet_texts(data, source, text_column)
    elif format in ("csv", "tsv"):
        texts = _delimited_texts(data, source, "," if format == "csv" else "\t", text_column)
    elif format == "jsonl":
        texts = _jsonl_texts(decode(data, source), source, text_column)
    else:  # plain text, one document per line
        texts = [_without_labels(line) for line in decode(data, source).splitlines()]
    texts = [text for text in texts if text and not text.isspace()]
    if not texts:
        raise data_error(source, "no texts (data.unlabeled)")
    return texts


def _without_labels(line: str) -> str:
    words = line.split(" ")
    start = 0
    while start < len(words) and words[start].startswith("__label__"):
        start += 1
    return " ".join(words[start:]) if start else line


def _delimited_texts(data: bytes, source: str, delimiter: str, column: str) -> list[str]:
    allow_huge_fields()
    reader = csv.reader(
        io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=""), delimiter=delimiter
    )
    try:
        header = next(reader, None)
        if header is None or column not in header:
            raise data_error(
                source, f"no column {quote(column)} (data.text_column) in the header row", line=1
            )
        at = header.index(column)
        return [row[at] for row in reader if len(row) > at]
    except csv.Error as error:
        raise data_error(source, f"malformed {'csv' if delimiter == ',' else 'tsv'} ({error})") from None
    except UnicodeDecodeError:
        decode(data, source)  # raises the one message for a bad byte (line, byte, column)
        raise data_error(source, "not UTF-8 text; re-save the file as UTF-8") from None


def _jsonl_texts(text: str, source: str, column: str) -> list[str]:
    texts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise data_error(source, f"invalid JSON ({error.msg})", line=number) from None
        value = record.get(column) if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise data_error(source, f"no text field {quote(column)} (data.text_column)", line=number)
        texts.append(value)
    return texts


def _parquet_texts(data: bytes, source: str, column: str) -> list[str]:
    from rnnclf.data.parquet import read_parquet_column

    return [value for value in read_parquet_column(data, source, column) if isinstance(value, str)]
