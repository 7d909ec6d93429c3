"""JSON Lines files: one JSON object per line, with the text and the label in named fields."""

from __future__ import annotations

import difflib
import json

from rnnclf.data.delimited import strip_labels
from rnnclf.data.labelsets import LabelSet, label_set, split_labels
from rnnclf.data.source import MAX_COLUMNS_LISTED, MissingColumn, data_error, quote


def read_jsonl(
    text: str, source: str, text_column: str, label_column: str | None, separator: str | None = None
) -> tuple[list[str], list[str] | list[LabelSet]]:
    """One JSON object per line; the text and label are fields named text_column and label_column.
    separator: multi-label data, the label field is a list (or a string of labels joined by separator,
    or null: none of them); None: one label a line. label_column None: texts only (no labels)."""
    texts: list[str] = []
    labels: list = []
    # Split on "\n" only: str.splitlines also splits on U+2028 etc., which JSON allows raw inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        record = parse_json_line(line, source, number)
        texts.append(json_text(record, text_column, source, number))
        if label_column is None:
            continue
        if separator is None:
            labels.append(json_label(record, label_column, source, number))
        else:
            labels.append(json_labels(record, label_column, separator, source, number))
    return texts, labels if separator is not None else strip_labels(labels)


def parse_json_line(line: str, source: str, number: int) -> dict:
    try:
        record = json.loads(line)
    except ValueError as error:  # JSONDecodeError, and also integers longer than Python's digit limit
        is_array = line.lstrip().startswith("[")
        hint = "; a JSON array is not supported, write one object per line" if is_array else ""
        reason = f"{error.msg} at column {error.colno}" if isinstance(error, json.JSONDecodeError) else error
        raise data_error(source, f"not valid JSON ({reason}){hint}", line=number) from None
    except RecursionError:
        raise data_error(source, "not valid JSON (nested too deeply)", line=number) from None
    if not isinstance(record, dict):
        hint = (
            "; a JSON array is not supported, write one object per line" if isinstance(record, list) else ""
        )
        raise data_error(
            source,
            f"expected a JSON object {{...}}, got {json_type(record)} {quote(line.strip())}{hint}",
            line=number,
        )
    return record


def json_field(record: dict, field: str, role: str, source: str, number: int) -> object:
    if field in record:
        return record[field]
    keys = [key for key in record if len(key) <= 100]
    close = difflib.get_close_matches(field, keys, n=1, cutoff=0.6)
    hint = f"; did you mean {quote(close[0])}?" if close else ""
    present = ", ".join(map(quote, list(record)[:MAX_COLUMNS_LISTED])) or "none"
    message = f"no {role} field {quote(field)} (fields present: {present}){hint}"
    raise MissingColumn(data_error(source, message, line=number).args[0], role)


def json_text(record: dict, field: str, source: str, number: int) -> str:
    value = json_field(record, field, "text", source, number)
    if not isinstance(value, str):
        raise data_error(
            source, f"text field {quote(field)} must be a string, got {json_type(value)}", line=number
        )
    return value


def json_labels(record: dict, field: str, separator: str, source: str, number: int) -> LabelSet:
    """A multi-label field: a list of labels, a string of labels joined by separator, or null (none)."""
    value = json_field(record, field, "label", source, number)
    where = f"field {quote(field)}"
    if value is None:
        return ()
    if isinstance(value, str):
        return split_labels(value, separator, source, number, where)
    items = value if isinstance(value, list) else [value]
    if any(isinstance(item, (dict, list)) or item is None for item in items):
        raise data_error(
            source, f"label field {quote(field)} must be a list of strings or numbers", line=number
        )
    return label_set(map(scalar_label, items), source, number, where, value)


def scalar_label(value: object) -> str:
    # Class ids are often written as numbers or booleans; labels are class names, so turn them into strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def json_label(record: dict, field: str, source: str, number: int) -> str:
    value = json_field(record, field, "label", source, number)
    # Class ids are often written as numbers or booleans; labels are class names, so turn them into strings.
    if isinstance(value, bool):
        label = "true" if value else "false"
    elif isinstance(value, (int, float)):
        label = str(value)
    elif isinstance(value, str):
        label = value
    else:
        hint = (
            "; for several labels per document set data.multi_label: true" if isinstance(value, list) else ""
        )
        raise data_error(
            source,
            f"label field {quote(field)} must be a string, number or boolean, got {json_type(value)}{hint}",
            line=number,
        )
    if not label.strip():
        raise data_error(source, f"empty label in field {quote(field)}", line=number)
    return label


def json_type(value: object) -> str:
    names = {type(None): "null", dict: "an object", list: "an array", bool: "a boolean", str: "a string"}
    return names.get(type(value), "a number")
