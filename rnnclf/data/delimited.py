"""CSV and TSV files: a header row naming the columns, then one example per row.

Text and label columns are chosen by header name; a missing column, a duplicate name, a ragged row or a
malformed quote becomes one error line with the likely fix (a close name, the other delimiter, quoting).
"""

from __future__ import annotations

import csv
import difflib
import io
import sys
from collections import Counter

from rnnclf.data.labelsets import LabelSet, split_labels
from rnnclf.data.source import MAX_COLUMNS_LISTED, MissingColumn, data_error, decode, plural, quote
from rnnclf.errors import RnnclfError


def allow_huge_fields() -> None:
    """Lift the csv module's 128 KiB field limit: one document may legitimately be millions of characters."""
    try:
        csv.field_size_limit(sys.maxsize)
    except OverflowError:  # platforms where a C long is 32 bits
        csv.field_size_limit(2**31 - 1)


def is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def read_delimited(
    data: bytes,
    source: str,
    delimiter: str,
    text_column: str,
    label_column: str | None,
    separator: str | None = None,
) -> tuple[list[str], list[str] | list[LabelSet]]:
    """Rows of a csv/tsv file with a header row; text and label columns are chosen by header name.
    separator: multi-label data, each label cell holds labels joined by it (None: one label a row).
    label_column None: texts only (documents to label); the labels list is then empty."""
    allow_huge_fields()
    # TextIOWrapper decodes while csv reads: measurably faster than decoding to a str and wrapping it in
    # StringIO, and csv gets a real file object so quoted newlines stay inside their field.
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    texts: list[str] = []
    labels: list = []
    # The line where the next row starts: csv.Error is raised while reading a row, before we see it.
    next_line = 1
    header: list[str] | None = None
    try:
        for row in reader:
            row_line, next_line = next_line, reader.line_num + 1
            if not is_blank(row):
                header = row
                break
        if header is None:
            raise data_error(source, "no examples (empty data set; expected a header row, then one row each)")
        header_line = row_line
        text_at, label_at = column_positions(
            header, text_column, label_column, source, delimiter, header_line
        )
        width = len(header)
        for row in reader:
            row_line, next_line = next_line, reader.line_num + 1
            if len(row) != width:
                if is_blank(row):
                    continue
                raise ragged_row_error(row, header, delimiter, source, row_line)
            if label_at is None:
                texts.append(row[text_at])
                continue
            label = row[label_at]
            if separator is not None:
                where = f"column {quote(header[label_at])}"
                texts.append(row[text_at])
                labels.append(split_labels(label, separator, source, row_line, where))
                continue
            if not label or label.isspace():
                raise data_error(source, f"empty label in column {quote(header[label_at])}", line=row_line)
            texts.append(row[text_at])
            labels.append(label)
    except UnicodeDecodeError:
        # The incremental decoder's offsets are relative to a chunk; decode the whole thing to locate it.
        decode(data, source)
        raise data_error(source, "invalid UTF-8; re-save the file as UTF-8") from None
    except csv.Error as error:
        raise csv_error(error, source, next_line, reader.line_num) from None
    return texts, labels if separator is not None else strip_labels(labels)


def header_names(header: list[str]) -> list[str]:
    # Spreadsheets often leave spaces around header cells; " label" should still match "label".
    return [name.strip() for name in header]


def column_positions(
    header: list[str],
    text_column: str,
    label_column: str | None,
    source: str,
    delimiter: str,
    header_line: int,
) -> tuple[int, int | None]:
    names = header_names(header)
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise data_error(
            source,
            f"duplicate column names in the header row: {', '.join(map(quote, duplicates))}",
            line=header_line,
        )
    text_at = column_position(names, text_column, "text", source, delimiter)
    if label_column is None:
        return text_at, None
    return text_at, column_position(names, label_column, "label", source, delimiter)


def column_position(names: list[str], column: str, role: str, source: str, delimiter: str | None) -> int:
    """Where `column` is among the header names; else a MissingColumn error listing them, with a likely
    fix. delimiter: the file's (for the "use the other delimiter" hint); None for formats without one."""
    if column in names:
        return names.index(column)
    listed = ", ".join(quote(name) for name in names[:MAX_COLUMNS_LISTED])
    if len(names) > MAX_COLUMNS_LISTED:
        listed += f", ... ({len(names)} in all)"
    message = f"no {role} column {quote(column)} in the header row (columns present: {listed})"
    raise MissingColumn(data_error(source, message + column_hint(names, column, delimiter)).args[0], role)


def column_hint(names: list[str], column: str, delimiter: str | None) -> str:
    """A likely fix: a near-identical name, or a header that was split on the wrong delimiter."""
    if len(names) == 1 and delimiter is not None:
        for other, format in ((",", "csv"), ("\t", "tsv")):
            if other != delimiter and other in names[0]:
                return f"; the header looks {quote(other)}-separated: use format {format}"
    same_but_case = [name for name in names if name.casefold() == column.casefold()]
    # difflib is quadratic in string length; a header that is really a long first data row must not stall.
    candidates = same_but_case or [name for name in names if len(name) <= 100]
    close = difflib.get_close_matches(column, candidates, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {quote(close[0])}?"
    if any(len(name) > 40 or len(name.split()) > 2 for name in names):  # reads like a row of data
        return "; the first row must be a header naming the columns"
    return ""


def ragged_row_error(
    row: list[str], header: list[str], delimiter: str, source: str, line: int
) -> RnnclfError:
    return data_error(
        source,
        f"{plural(len(row), 'field')} but the header has {len(header)}; "
        f"quote fields that contain {quote(delimiter)} or line breaks",
        line=line,
    )


def csv_error(error: csv.Error, source: str, row_line: int, current_line: int) -> RnnclfError:
    reason = str(error)
    if "unexpected end of data" in reason:
        # Strict csv hit the end of the file inside a quoted field: a quote opened in this row never closed.
        return data_error(
            source,
            'unclosed quote: a quoted field in this row runs to the end of the file; close it with " '
            'and write a literal quote inside a quoted field as ""',
            line=row_line,
        )
    hint = '; inside a quoted field write a literal quote as ""' if '"' in reason else ""
    return data_error(source, f"malformed row ({reason}){hint}", line=current_line)


def strip_labels(labels: list[str]) -> list[str]:
    """Drop spaces around labels ("positive " is a typo, not a class); done per distinct label, so cheap."""
    renamed = {label: label.strip() for label in set(labels) if label != label.strip()}
    if not renamed:
        return labels
    return [renamed.get(label, label) for label in labels]
