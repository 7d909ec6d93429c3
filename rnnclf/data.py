"""Readers: csv/tsv/jsonl/fastText/folder-per-class, .gz -> texts and labels; splits.

Every reader turns a data set into `Examples` (parallel lists of texts and class-name labels). Bad input never
escapes as a decoding, csv, json, gzip or OS exception: it becomes one `RnnclfError` line naming the file, the
line where known, what is wrong and what would be allowed. Problems that leave the data usable (empty
documents, multi-label lines, empty class folders) are logged once each, with a count, on the "rnnclf" logger.

Any file may be gzip-compressed; that is recognised by its magic bytes, so the ".gz" name is optional.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import hashlib
import io
import json
import logging
import math
import os
import random
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rnnclf.errors import RnnclfError

log = logging.getLogger("rnnclf")

# The public API; the other functions are helpers (importable, but free to change).
__all__ = ["FORMATS", "Examples", "detect_format", "file_digest", "read_examples", "stratified_split"]

FORMATS = ("auto", "csv", "tsv", "jsonl", "fasttext", "folder")

# Extension (after removing ".gz") -> format, for format="auto".
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".txt": "fasttext",
    ".ft": "fasttext",
    ".fasttext": "fasttext",
}
EXTENSION_HELP = ".csv, .tsv/.tab, .jsonl/.ndjson/.json, .txt/.ft/.fasttext (each optionally + .gz)"

GZIP_MAGIC = b"\x1f\x8b"
LABEL_PREFIX = "__label__"
FOLDER_SUFFIXES = (".txt", ".txt.gz")

# Error messages quote user content (column names, lines); cap it so one bad line cannot flood the terminal.
QUOTE_LIMIT = 60
MAX_COLUMNS_LISTED = 20


@dataclass
class Examples:
    """A data set as parallel lists: texts[i] has class name labels[i]; source is the path, for messages."""

    texts: list[str]
    labels: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


# --- messages ---------------------------------------------------------------------------------------------


def display_name(path: str | Path) -> str:
    """The path as the user wrote it, escaped if it holds characters that would break a one-line message."""
    name = str(path)
    return name if name.isprintable() else repr(name)[1:-1]


def data_error(source: str, message: str, line: int | None = None) -> RnnclfError:
    """An RnnclfError "source: line N: message", forced onto one line whatever the message contains."""
    where = f"{source}: line {line}: " if line is not None else f"{source}: "
    return RnnclfError(" ".join((where + message).splitlines()))


def quote(value: object) -> str:
    """repr() of user content, shortened: repr escapes newlines so the message stays on one line."""
    text = repr(value)
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 3] + "..."


def plural(count: int, singular: str, several: str | None = None) -> str:
    return f"{count} {singular if count == 1 else several or singular + 's'}"


# --- format detection -------------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """The format for format="auto": "folder" for a directory, otherwise by extension (".gz" ignored)."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[: -len(".gz")]
    extension = os.path.splitext(name)[1]
    if extension in EXTENSIONS:
        return EXTENSIONS[extension]
    shown = quote(extension) if extension else "no extension"
    raise data_error(
        display_name(path),
        f"cannot tell the data format from the file name ({shown}); use one of {EXTENSION_HELP}, "
        f"or name the format: {', '.join(FORMATS[1:])}",
    )


def chosen_format(path: Path, format: str) -> str:
    wanted = format.lower()
    if wanted == "auto":
        return detect_format(path)
    if wanted not in FORMATS:
        raise data_error(
            display_name(path), f"unknown data format {quote(format)}; allowed: {', '.join(FORMATS)}"
        )
    return wanted


# --- bytes and text ---------------------------------------------------------------------------------------


def read_bytes(path: Path, source: str) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic bytes (whatever its name)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise data_error(source, "no such file") from None
    except IsADirectoryError:
        raise data_error(source, "is a directory, not a file") from None
    except PermissionError:
        raise data_error(source, "permission denied; make the file readable") from None
    except OSError as error:
        raise data_error(source, f"cannot read the file ({error.strerror or error})") from None
    if data.startswith(GZIP_MAGIC):
        return gunzip(data, source)
    return data


def gunzip(data: bytes, source: str) -> bytes:
    try:
        # gzip.decompress (not zlib) so that concatenated members (bgzip, `cat a.gz b.gz`) work too.
        return gzip.decompress(data)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as error:
        raise data_error(
            source, f"starts like a gzip file but is not a valid one ({error}); the file may be truncated"
        ) from None


def decode(data: bytes, source: str) -> str:
    """Strict UTF-8 (a leading BOM is dropped); bad bytes -> an error naming their line and offset."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        # str() of a memoryview decodes without first copying the (possibly large) bytes.
        return str(memoryview(data)[start:], "utf-8")
    except UnicodeDecodeError as error:
        raise utf8_error(data, start + error.start, source) from None


def utf8_error(data: bytes, offset: int, source: str) -> RnnclfError:
    line = data.count(b"\n", 0, offset) + 1
    return data_error(
        source,
        f"invalid UTF-8 (byte 0x{data[offset]:02x} at offset {offset}); re-save the file as UTF-8",
        line=line,
    )


# --- csv / tsv --------------------------------------------------------------------------------------------


def allow_huge_fields() -> None:
    """Lift the csv module's 128 KiB field limit: one document may legitimately be millions of characters."""
    try:
        csv.field_size_limit(sys.maxsize)
    except OverflowError:  # platforms where a C long is 32 bits
        csv.field_size_limit(2**31 - 1)


def is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def read_delimited(
    data: bytes, source: str, delimiter: str, text_column: str, label_column: str
) -> tuple[list[str], list[str]]:
    """Rows of a csv/tsv file with a header row; text and label columns are chosen by header name."""
    allow_huge_fields()
    # TextIOWrapper decodes while csv reads: measurably faster than decoding to a str and wrapping it in
    # StringIO, and csv gets a real file object so quoted newlines stay inside their field.
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    texts: list[str] = []
    labels: list[str] = []
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
            label = row[label_at]
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
    return texts, strip_labels(labels)


def header_names(header: list[str]) -> list[str]:
    # Spreadsheets often leave spaces around header cells; " label" should still match "label".
    return [name.strip() for name in header]


def column_positions(
    header: list[str], text_column: str, label_column: str, source: str, delimiter: str, header_line: int
) -> tuple[int, int]:
    names = header_names(header)
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise data_error(
            source,
            f"duplicate column names in the header row: {', '.join(map(quote, duplicates))}",
            line=header_line,
        )
    return (
        column_position(names, text_column, "text", source, delimiter),
        column_position(names, label_column, "label", source, delimiter),
    )


def column_position(names: list[str], column: str, role: str, source: str, delimiter: str) -> int:
    if column in names:
        return names.index(column)
    listed = ", ".join(quote(name) for name in names[:MAX_COLUMNS_LISTED])
    if len(names) > MAX_COLUMNS_LISTED:
        listed += f", ... ({len(names)} in all)"
    raise data_error(
        source,
        f"no {role} column {quote(column)} in the header row (columns present: {listed})"
        + column_hint(names, column, delimiter),
    )


def column_hint(names: list[str], column: str, delimiter: str) -> str:
    """A likely fix: a near-identical name, or a header that was split on the wrong delimiter."""
    if len(names) == 1:
        for other, format in ((",", "csv"), ("\t", "tsv")):
            if other != delimiter and other in names[0]:
                return f"; the header looks {quote(other)}-separated: use format {format}"
    same_but_case = [name for name in names if name.casefold() == column.casefold()]
    # difflib is quadratic in string length; a header that is really a long first data row must not stall.
    candidates = same_but_case or [name for name in names if len(name) <= 100]
    close = difflib.get_close_matches(column, candidates, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {quote(close[0])}?"
    return "; the first row must be a header naming the columns, or choose the columns by name"


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


# --- jsonl ------------------------------------------------------------------------------------------------


def read_jsonl(text: str, source: str, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """One JSON object per line; the text and label are fields named text_column and label_column."""
    texts: list[str] = []
    labels: list[str] = []
    # Split on "\n" only: str.splitlines also splits on U+2028 etc., which JSON allows raw inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        record = parse_json_line(line, source, number)
        texts.append(json_text(record, text_column, source, number))
        labels.append(json_label(record, label_column, source, number))
    return texts, strip_labels(labels)


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
    raise data_error(source, f"no {role} field {quote(field)} (fields present: {present}){hint}", line=number)


def json_text(record: dict, field: str, source: str, number: int) -> str:
    value = json_field(record, field, "text", source, number)
    if not isinstance(value, str):
        raise data_error(
            source, f"text field {quote(field)} must be a string, got {json_type(value)}", line=number
        )
    return value


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
        raise data_error(
            source,
            f"label field {quote(field)} must be a string, number or boolean, got {json_type(value)}",
            line=number,
        )
    if not label.strip():
        raise data_error(source, f"empty label in field {quote(field)}", line=number)
    return label


def json_type(value: object) -> str:
    names = {type(None): "null", dict: "an object", list: "an array", bool: "a boolean", str: "a string"}
    return names.get(type(value), "a number")


# --- fastText ---------------------------------------------------------------------------------------------


def read_fasttext(text: str, source: str) -> tuple[list[str], list[str]]:
    """Lines "__label__<class> text"; only the first label of a multi-label line is kept (one warning)."""
    texts: list[str] = []
    labels: list[str] = []
    several_labels = 0
    for number, line in enumerate(text.split("\n"), start=1):
        words = line.split(None, 1)
        if not words:
            continue
        if not words[0].startswith(LABEL_PREFIX):
            raise data_error(
                source, f"expected '{LABEL_PREFIX}<class> text', got {quote(line.strip())}", line=number
            )
        label = words[0][len(LABEL_PREFIX) :]
        if not label:
            raise data_error(source, f"empty label ('{LABEL_PREFIX}' with no class name)", line=number)
        rest = words[1] if len(words) > 1 else ""
        if rest.startswith(LABEL_PREFIX):
            several_labels += 1
            rest = drop_leading_labels(rest)
        texts.append(rest.strip())
        labels.append(label)
    if several_labels:
        log.warning(
            "%s: %s with several labels; only the first label of each was kept (single-label classifier)",
            source,
            plural(several_labels, "line"),
        )
    return texts, labels


def drop_leading_labels(rest: str) -> str:
    while rest.startswith(LABEL_PREFIX):
        words = rest.split(None, 1)
        rest = words[1] if len(words) > 1 else ""
    return rest


# --- folder per class -------------------------------------------------------------------------------------


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def class_folders(root: Path, source: str) -> list[Path]:
    """The direct, non-hidden subfolders of root, sorted: each one is a class named after the folder."""
    try:
        entries = list(os.scandir(root))
    except OSError as error:
        raise data_error(source, f"cannot list the folder ({error.strerror or error})") from None
    folders = [entry for entry in entries if not is_hidden(entry.name) and is_directory(entry)]
    return sorted((Path(entry.path) for entry in folders), key=lambda folder: folder.name)


def is_directory(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a broken link or a vanished entry is not a class folder
        return False


def text_files(folder: Path) -> tuple[list[Path], int]:
    """The folder's non-hidden *.txt / *.txt.gz files, sorted, and how many other files were passed over."""
    try:
        entries = [entry for entry in os.scandir(folder) if not is_hidden(entry.name) and entry.is_file()]
    except OSError as error:
        raise data_error(
            display_name(folder), f"cannot list the folder ({error.strerror or error})"
        ) from None
    chosen = sorted(entry.name for entry in entries if entry.name.lower().endswith(FOLDER_SUFFIXES))
    return [folder / name for name in chosen], len(entries) - len(chosen)


def read_folder(root: Path, source: str) -> tuple[list[str], list[str]]:
    """root/<class>/*.txt: one document per file, labelled with its folder's name."""
    texts: list[str] = []
    labels: list[str] = []
    empty: list[str] = []
    for folder in class_folders(root, source):
        files, _ = text_files(folder)
        if not files:
            empty.append(folder.name)
            continue
        for file in files:
            name = display_name(file)
            texts.append(decode(read_bytes(file, name), name))
            labels.append(folder.name)
    if not texts:
        raise data_error(
            source,
            "no examples (empty data set): no .txt or .txt.gz files in class subfolders; "
            "expected <folder>/<class>/<document>.txt",
        )
    if empty:
        log.warning(
            "%s: %s without .txt files skipped: %s",
            source,
            plural(len(empty), "class folder"),
            ", ".join(map(quote, empty)),
        )
    return texts, labels


def folder_files(root: Path, source: str) -> list[Path]:
    """Every file read_folder would read, in its order."""
    return [file for folder in class_folders(root, source) for file in text_files(folder)[0]]


# --- entry points -----------------------------------------------------------------------------------------


def read_examples(
    path: str | Path, format: str = "auto", text_column: str = "text", label_column: str = "label"
) -> Examples:
    """Read a data set in one of FORMATS; raises RnnclfError (one line, naming the file) for bad input."""
    path = Path(path)
    source = display_name(path)
    if not path.exists():
        raise data_error(source, "no such file")
    chosen = chosen_format(path, format)
    if chosen == "folder":
        if not path.is_dir():
            raise data_error(source, "is a file, but format folder needs a directory <folder>/<class>/*.txt")
        texts, labels = read_folder(path, source)
    else:
        if path.is_dir():
            raise data_error(
                source, f"is a directory; format {chosen} needs a file (use format folder for <class>/*.txt)"
            )
        texts, labels = read_file(path, source, chosen, text_column, label_column)
    if not texts:
        raise data_error(source, "no examples (empty data set)")
    warn_empty_texts(texts, source)
    return Examples(texts=texts, labels=labels, source=source)


def read_file(
    path: Path, source: str, format: str, text_column: str, label_column: str
) -> tuple[list[str], list[str]]:
    data = read_bytes(path, source)
    if format in ("csv", "tsv"):
        delimiter = "," if format == "csv" else "\t"
        return read_delimited(data, source, delimiter, text_column, label_column)
    text = decode(data, source)
    if format == "jsonl":
        return read_jsonl(text, source, text_column, label_column)
    return read_fasttext(text, source)


def warn_empty_texts(texts: list[str], source: str) -> None:
    empty = sum(1 for text in texts if not text or text.isspace())
    if empty:
        log.warning(
            "%s: %s kept (%s)",
            source,
            plural(empty, "empty document"),
            "it becomes a single unknown token" if empty == 1 else "they become a single unknown token",
        )


def stratified_split(labels: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train_indices, valid_indices), both sorted, with about `fraction` of every class in valid.

    A class gets round(fraction * size) validation examples, but at least one when it has two or more and
    fraction > 0, and never all of them (so every class can still be learned). Deterministic for a seed.
    """
    if not (isinstance(fraction, (int, float)) and not math.isnan(fraction) and 0 <= fraction < 1):
        raise RnnclfError(f"validation fraction must be at least 0 and below 1, got {fraction!r}")
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    generator = random.Random(seed)
    train: list[int] = []
    valid: list[int] = []
    # Sorted classes: the shuffles must not depend on which class happens to come first in the file.
    for label in sorted(by_class):
        indices = by_class[label]
        generator.shuffle(indices)
        count = validation_count(len(indices), fraction)
        valid.extend(indices[:count])
        train.extend(indices[count:])
    singletons = [label for label, indices in by_class.items() if len(indices) == 1]
    if fraction > 0 and singletons:
        log.warning(
            "%s a single example and no validation example: %s",
            plural(len(singletons), "class has", "classes have"),
            ", ".join(map(quote, sorted(singletons)[:MAX_COLUMNS_LISTED])),
        )
    return sorted(train), sorted(valid)


def validation_count(size: int, fraction: float) -> int:
    count = round(fraction * size)
    if fraction > 0 and size >= 2:
        count = max(count, 1)
    return min(count, max(size - 1, 0))


def file_digest(path: Path) -> str:
    """sha256 hex of the file's bytes, or for a folder of every file read_folder reads (paths and contents).

    Used as a cache key, so a folder's key covers exactly the documents, not unrelated files beside them.
    """
    path = Path(path)
    source = display_name(path)
    if not path.exists():
        raise data_error(source, "no such file")
    if not path.is_dir():
        return bytes_digest(path, source).hex()
    digest = hashlib.sha256()
    for file in folder_files(path, source):
        relative = file.relative_to(path).as_posix().encode("utf-8", "surrogateescape")
        # A path cannot contain NUL and each file digest has a fixed length, so the stream is unambiguous.
        digest.update(relative + b"\0" + bytes_digest(file, display_name(file)))
    return digest.hexdigest()


def bytes_digest(path: Path, source: str) -> bytes:
    try:
        digest = hashlib.sha256()
        # Chunks keep memory flat for big files (hashlib.file_digest would need Python 3.11).
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.digest()
    except FileNotFoundError:
        raise data_error(source, "no such file") from None
    except OSError as error:
        raise data_error(source, f"cannot read the file ({error.strerror or error})") from None
