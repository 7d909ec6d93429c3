"""Documents to score, read by column: what `rnnclf predict --file` and `rnnclf eval --data` read.

    csv / tsv / jsonl / parquet    the text column (eval: and the label column), through the readers that
                                   training uses, so a header row is never a document
    fastText (.txt, .ft)           eval: "__label__<class> text" lines, as training reads them;
    .txt, other names, '-' (stdin) predict: one document per line, read as it is needed (a stream), leading
                                   "__label__<class>" words dropped (they are labels, not text)

The columns default to the model's `data.text_column` / `data.label_column`; the caller passes the
`--text-column` / `--label-column` flags over them. A missing column's error line names those flags.
A line-per-document file whose first line looks like a csv/tsv header naming a column is refused, never
scored as a document. No torch here: a scorer without torch (ONNX Runtime) reads files through this too.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rnnclf.data import Examples, read_examples
from rnnclf.data.fasttext import LABEL_PREFIX
from rnnclf.data.formats import EXTENSIONS, FORMATS, chosen_format, detect_format
from rnnclf.data.source import (
    GZIP_MAGIC,
    MissingColumn,
    data_error,
    display_name,
    not_utf8,
    quote,
)
from rnnclf.errors import RnnclfError

STDIN = "-"
# What chooses the columns on `rnnclf predict` and `rnnclf eval`, named in a missing column's error line.
FLAG_COLUMN_KEYS = {
    "text": "--text-column (default: the model's data.text_column)",
    "label": "--label-column (default: the model's data.label_column)",
}
TABLE_FORMATS = ("csv", "tsv", "jsonl", "parquet")


def scored_format(path: str, configured: str = "auto") -> str:
    """The format of a file to score: from its name (a known extension), else the model's data.format,
    else "lines" (one document per line). stdin is always "lines"; a fastText file is too, for predict."""
    if path == STDIN:
        return "lines"
    location = Path(path)
    name = location.name.lower().removesuffix(".gz")
    if location.is_dir() or Path(name).suffix in EXTENSIONS:
        format = detect_format(location)
    elif configured.lower() in FORMATS and configured.lower() not in ("auto", "folder"):
        format = chosen_format(location, configured)
    else:
        format = "lines"
    return "lines" if format == "fasttext" else format


def texts_to_score(
    path: str, text_column: str = "text", configured_format: str = "auto", label_column: str = "label"
) -> Iterator[str]:
    """The documents of a file to label (`rnnclf predict --file`), in order: the text column of a table
    (csv/tsv/jsonl/parquet), or one document per line (.txt, fastText, any other name, '-' for stdin),
    streamed. Errors are one RnnclfError line naming the file (and line); a line-per-document file whose
    first line is a header naming text_column or label_column is refused."""
    format = scored_format(path, configured_format)
    if format == "lines":
        return _lines(path, (text_column, label_column))
    if format == "folder":
        raise data_error(display_name(path), "is a folder; --file takes a file (or '-' for stdin)")
    location = Path(path)
    source = display_name(location)
    if not location.exists():
        raise data_error(source, "no such file")
    from rnnclf.data import read_file

    try:
        texts, _ = read_file(location, source, format, text_column, None)
    except MissingColumn as missing:
        raise missing.choose_with(FLAG_COLUMN_KEYS) from None
    return iter(texts)


def labelled_to_score(
    path: str,
    data: Any,
    text_column: str | None = None,
    label_column: str | None = None,
    by_name: bool = True,
) -> Examples:
    """A labelled file to evaluate on (`rnnclf eval --data`), read as training reads data, with the
    model's data section (multi_label, label_separator) and its columns unless text_column/label_column
    are given. by_name: the format follows the file's name when it has a known extension (a file the user
    names); False: the model's data.format, as for its own data.test."""
    format = data.format
    if by_name and format != "auto" and not Path(path).is_dir():
        known = Path(Path(path).name.lower().removesuffix(".gz")).suffix in EXTENSIONS
        format = "auto" if known else format
    return read_examples(
        path,
        format,
        text_column or data.text_column,
        label_column or data.label_column,
        data.multi_label,
        data.label_separator,
        column_keys=FLAG_COLUMN_KEYS,
    )


def _open(path: str) -> tuple[str, IO[bytes]]:
    """(name for messages, a binary stream of the file or stdin), gunzipped when it starts like gzip."""
    if path == STDIN:
        return "stdin", sys.stdin.buffer
    source = display_name(path)
    location = Path(path)
    if not location.exists():
        raise data_error(source, "no such file")
    if location.is_dir():
        raise data_error(source, "is a folder; --file takes a file (or '-' for stdin)")
    try:
        handle = location.open("rb")
        if handle.peek(2)[:2] == GZIP_MAGIC:
            handle.close()
            return source, gzip.open(location, "rb")  # type: ignore[return-value]
    except OSError as error:
        raise data_error(source, f"cannot read the file ({error.strerror or error})") from None
    return source, handle


def _lines(path: str, columns: tuple[str, str]) -> Iterator[str]:
    """One document per line, decoded line by line as they are needed (memory stays flat for any size)."""
    source, stream = _open(path)
    closing = contextlib.nullcontext() if path == STDIN else stream
    with closing:
        try:
            for number, raw in enumerate(stream, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    column = len(raw[: error.start].decode("utf-8", errors="replace").lstrip("\ufeff")) + 1
                    raise not_utf8(source, number, raw[error.start], column) from None
                line = line.rstrip("\r\n")
                if number == 1:
                    line = line.removeprefix("\ufeff")
                    _refuse_header(line, source, columns)
                yield _without_labels(line)
        except (OSError, EOFError) as error:  # a damaged gzip file, a read error
            raise data_error(source, f"cannot read the file ({error})") from None


def _without_labels(line: str) -> str:
    """A fastText line's text: leading "__label__<class>" words are labels, not part of the document."""
    if not line.startswith(LABEL_PREFIX):
        return line
    rest = line
    while rest.startswith(LABEL_PREFIX):
        words = rest.split(None, 1)
        rest = words[1] if len(words) > 1 else ""
    return rest


def _refuse_header(line: str, source: str, columns: tuple[str, str]) -> None:
    """A first line of csv/tsv fields that are all names (no spaces inside), one of them the text or label
    column's, is a header: scoring it as a document (and the rows after it, label column and all, as
    text) would be silently wrong. A sentence with a comma ("Text, then more") is no header."""
    names = {column.casefold() for column in columns}
    text_column = columns[0]
    for delimiter, format in ((",", "csv"), ("\t", "tsv")):
        if delimiter not in line:
            continue
        with contextlib.suppress(csv.Error):
            fields = [field.strip() for field in next(csv.reader([line], delimiter=delimiter))]
            folded = [field.casefold() for field in fields]
            name_like = all(field and (len(field.split()) == 1 or field in names) for field in folded)
            if len(fields) >= 2 and name_like and names & set(folded):
                shown = ", ".join(quote(field) for field in fields[:8])
                where = "stdin is read" if source == "stdin" else "a file with this name is read"
                raise RnnclfError(
                    f"{source}: line 1 looks like a {format} header ({shown}), not a document: {where} one "
                    f"document per line; give a .{format} file to score its {quote(text_column)} column"
                )
