"""Parquet files, as Hugging Face `datasets` (`Dataset.to_parquet`) and pandas write them (needs pyarrow).

Text and label columns are chosen by name, with the same messages as CSV (a close name, the columns present).
Labels become class names: a Hugging Face ClassLabel column (integers, with the names in the file's
"huggingface" schema metadata) gives its names; other integers, floats and booleans become strings, as in
JSON Lines. A missing value is an error naming its row (rows count from 1, as lines do elsewhere).
"""

from __future__ import annotations

import json
from typing import Any

from rnnclf.data.delimited import column_position, strip_labels
from rnnclf.data.labelsets import LabelSet, label_set, split_labels
from rnnclf.data.source import data_error, quote
from rnnclf.errors import MissingExtra


def read_parquet(
    data: bytes, source: str, text_column: str, label_column: str | None, separator: str | None = None
) -> tuple[list[str], list]:
    """The text and label columns of a Parquet file's bytes. separator: multi-label data (a list column,
    or strings of labels joined by it); None: one label a row. label_column None: texts only."""
    wanted = [(text_column, "text")] + ([(label_column, "label")] if label_column is not None else [])
    file, table = read_columns(data, source, wanted)
    texts = [
        text_of(value, row, text_column, source) for row, value in enumerate(table.column(0).to_pylist(), 1)
    ]
    if label_column is None:
        return texts, []
    class_names = huggingface_class_names(file.schema_arrow.metadata, label_column)
    values = enumerate(table.column(1).to_pylist(), 1)
    if separator is not None:
        return texts, [
            labels_of(value, row, label_column, source, class_names, separator) for row, value in values
        ]
    labels = [label_of(value, row, label_column, source, class_names) for row, value in values]
    return texts, strip_labels(labels)


def labels_of(
    value: Any, row: int, column: str, source: str, class_names: list[str] | None, separator: str
) -> LabelSet:
    """A multi-label cell: a list (of names or ClassLabel numbers), a joined string, or null (none)."""
    if value is None:
        return ()
    where = f"row {row} of column {quote(column)}"
    if isinstance(value, str):
        return split_labels(value, separator, source, None, where)
    items = value if isinstance(value, list) else [value]
    return label_set(
        (label_of(item, row, column, source, class_names) if item is not None else "" for item in items),
        source,
        None,
        where,
        value,
    )


def huggingface_class_names(metadata: dict[bytes, bytes] | None, column: str) -> list[str] | None:
    """A ClassLabel column's names, from the schema metadata `datasets` writes; None if there are none."""
    try:
        features = json.loads((metadata or {})[b"huggingface"])["info"]["features"]
        feature = features[column]
    except (KeyError, TypeError, ValueError):
        return None
    if (
        isinstance(feature, dict)
        and feature.get("_type") == "ClassLabel"
        and isinstance(feature.get("names"), list)
    ):
        return [str(name) for name in feature["names"]]
    return None


def text_of(value: Any, row: int, column: str, source: str) -> str:
    if not isinstance(value, str):
        shown = "a missing value" if value is None else f"{type(value).__name__} {quote(value)}"
        raise data_error(source, f"row {row}: text column {quote(column)} must hold strings, got {shown}")
    return value


def label_of(value: Any, row: int, column: str, source: str, class_names: list[str] | None) -> str:
    if value is None:
        raise data_error(source, f"row {row}: empty label in column {quote(column)}")
    if class_names is not None and isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(class_names):
            raise data_error(
                source, f"row {row}: class number {value} in column {quote(column)} has no name in the file"
            )
        return class_names[value]
    if isinstance(value, bool):
        label = "true" if value else "false"
    elif isinstance(value, (int, float, str)):
        label = str(value)
    else:
        raise data_error(
            source,
            f"row {row}: label column {quote(column)} must hold strings or numbers, got {quote(value)}",
        )
    if not label.strip():
        raise data_error(source, f"row {row}: empty label in column {quote(column)}")
    return label


def read_columns(data: bytes, source: str, wanted: list[tuple[str, str]]) -> tuple[Any, Any]:
    """(the pyarrow ParquetFile, a table of the `wanted` columns) of a Parquet file's bytes; wanted holds
    (column name, its role: "text" or "label", for the messages)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra("reading Parquet files", "pyarrow", "parquet") from None
    try:
        file = pq.ParquetFile(pa.BufferReader(data))
        names = file.schema_arrow.names
        positions = [column_position(names, name, role, source, None) for name, role in wanted]
        return file, file.read(columns=[names[at] for at in positions])
    except (pa.ArrowException, OSError) as error:
        reason = " ".join(str(error).split())[:200]
        raise data_error(source, f"not a readable Parquet file ({reason})") from None


def read_parquet_column(data: bytes, source: str, column: str) -> list[Any]:
    """One column of a Parquet file's bytes, by name (unlabeled texts)."""
    return read_columns(data, source, [(column, "text")])[1].column(0).to_pylist()
