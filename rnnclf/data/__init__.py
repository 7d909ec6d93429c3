"""Readers: csv/tsv/jsonl/fastText/folder-per-class/Parquet, .gz -> texts and labels; splits.

Every reader turns a data set into `Examples` (parallel lists of texts and class-name labels). Bad input never
escapes as a decoding, csv, json, gzip or OS exception: it becomes one `RnnclfError` line naming the file, the
line where known, what is wrong and what would be allowed. Problems that leave the data usable (empty
documents, multi-label lines, empty class folders) are logged once each, with a count, on the "rnnclf" logger.

Any file may be gzip-compressed; that is recognised by its magic bytes, so the ".gz" name is optional.

May import errors only (and pyarrow, an extra, for Parquet). Never imports text, models or training.

The package, one concern a module:
- this module: `Examples`, `read_examples` (checks the path, picks the reader) and the public API;
- `formats`: FORMATS and `detect_format` (the format from a folder or a file's extension);
- `source`: bytes (gunzipped), strict UTF-8 text, and the one-line error messages (`data_error`, `quote`);
- `delimited`: csv and tsv files with a header row;
- `jsonl`: one JSON object per line;
- `fasttext`: "__label__<class> text" lines;
- `folders`: <folder>/<class>/<document>.txt;
- `parquet`: Parquet files (Hugging Face `datasets`, pandas), with pyarrow (the `parquet` extra);
- `split`: `stratified_split` into training and validation indices;
- `digest`: `file_digest`, the content hash of a file or class folder (a cache key);
- `documents`: documents to score by column (`rnnclf predict --file`, `rnnclf eval --data`), stdin streamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnclf.data.delimited import read_delimited
from rnnclf.data.digest import file_digest
from rnnclf.data.fasttext import read_fasttext
from rnnclf.data.folders import read_folder
from rnnclf.data.formats import FORMATS, chosen_format, detect_format
from rnnclf.data.jsonl import read_jsonl
from rnnclf.data.labelsets import LabelSet, warn_if_joined, warn_unlabelled
from rnnclf.data.parquet import read_parquet
from rnnclf.data.source import (
    CONFIG_COLUMN_KEYS,
    MissingColumn,
    data_error,
    decode,
    display_name,
    log,
    plural,
    read_bytes,
)
from rnnclf.data.split import stratified_split

# The public API; the other functions are helpers (importable, but free to change).
__all__ = [
    "FORMATS",
    "Examples",
    "LabelSet",
    "detect_format",
    "file_digest",
    "read_configured",
    "read_examples",
    "stratified_split",
]


@dataclass
class Examples:
    """A data set as parallel lists: texts[i] has class name labels[i] (multi-label data: a sorted tuple of
    class names, maybe empty); source is the path, for messages."""

    texts: list[str]
    labels: list[str] | list[LabelSet]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


def read_examples(
    path: str | Path,
    format: str = "auto",
    text_column: str = "text",
    label_column: str = "label",
    multi_label: bool = False,
    separator: str = ",",
    column_keys: dict[str, str] = CONFIG_COLUMN_KEYS,
) -> Examples:
    """Read a data set in one of FORMATS; raises RnnclfError (one line, naming the file) for bad input.
    multi_label: each document's labels as a sorted tuple (csv/tsv: joined by `separator`).
    column_keys: what chooses the text and label columns, named in a missing column's error line
    (the config's keys; predict and eval give their flags)."""
    path = Path(path)
    source = display_name(path)
    if not path.exists():
        raise data_error(source, "no such file")
    chosen = chosen_format(path, format)
    if chosen == "folder" and multi_label:
        raise data_error(
            source,
            "folder-per-class data cannot hold several labels per document (data.multi_label: true); "
            "use csv/tsv (labels joined by data.label_separator), jsonl (a list) or fastText lines",
        )
    if chosen == "folder":
        if not path.is_dir():
            raise data_error(source, "is a file, but format folder needs a directory <folder>/<class>/*.txt")
        texts, labels = read_folder(path, source)
    else:
        if path.is_dir():
            raise data_error(
                source, f"is a directory; format {chosen} needs a file (use format folder for <class>/*.txt)"
            )
        multi = separator if multi_label else None
        try:
            texts, labels = read_file(path, source, chosen, text_column, label_column, multi)
        except MissingColumn as missing:
            raise missing.choose_with(column_keys) from None
    if not texts:
        raise data_error(source, "no examples (empty data set)")
    warn_empty_texts(texts, source)
    if multi_label:
        warn_unlabelled(labels, source)
    else:
        warn_if_joined(labels, separator, source)
    return Examples(texts=texts, labels=labels, source=source)


def read_configured(path: str | Path, data: Any) -> Examples:
    """read_examples with a config's data section (format, columns, multi_label, label_separator)."""
    return read_examples(
        path, data.format, data.text_column, data.label_column, data.multi_label, data.label_separator
    )


def read_file(
    path: Path,
    source: str,
    format: str,
    text_column: str,
    label_column: str | None,
    separator: str | None = None,
) -> tuple[list[str], list]:
    """separator: multi-label data (labels joined by it where a format needs joining); None: single-label.
    label_column None: texts only, labels [] (fastText lines: their labels are dropped)."""
    data = read_bytes(path, source)
    if format in ("csv", "tsv"):
        delimiter = "," if format == "csv" else "\t"
        return read_delimited(data, source, delimiter, text_column, label_column, separator)
    if format == "parquet":
        return read_parquet(data, source, text_column, label_column, separator)
    text = decode(data, source)
    if format == "jsonl":
        return read_jsonl(text, source, text_column, label_column, separator)
    texts, labels = read_fasttext(text, source, multi_label=separator is not None or label_column is None)
    return (texts, []) if label_column is None else (texts, labels)


def warn_empty_texts(texts: list[str], source: str) -> None:
    empty = sum(1 for text in texts if not text or text.isspace())
    if empty:
        log.warning(
            "%s: %s kept (%s)",
            source,
            plural(empty, "empty document"),
            "it becomes a single unknown token" if empty == 1 else "they become a single unknown token",
        )
