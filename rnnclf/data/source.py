"""From a file to checked text, and the one-line messages every reader uses to say what is wrong.

Bytes are read whole and gunzipped when they start with the gzip magic bytes (whatever the file's name); text
is strict UTF-8. Bad input never escapes as an OS, gzip or decoding exception: `data_error` turns it into one
`RnnclfError` line naming the file and, where known, the line. `quote` and `plural` keep such messages short.
"""

from __future__ import annotations

import codecs
import gzip
import logging
import zlib
from pathlib import Path

from rnnclf.errors import RnnclfError

log = logging.getLogger("rnnclf")

GZIP_MAGIC = b"\x1f\x8b"

# Error messages quote user content (column names, lines); cap it so one bad line cannot flood the terminal.
QUOTE_LIMIT = 60
MAX_COLUMNS_LISTED = 20


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


class MissingColumn(RnnclfError):
    """A text or label column (a JSON field) that the data lacks. The reader says what is there; the caller
    adds what chooses the column (`data.text_column` in a config, `--text-column` on predict and eval)."""

    def __init__(self, message: str, role: str) -> None:
        super().__init__(message)
        self.role = role  # "text" or "label"

    def choose_with(self, keys: dict[str, str]) -> RnnclfError:
        """The same line, ending with what sets this column: keys maps a role to its key or flag."""
        return RnnclfError(f"{self}; choose the {self.role} column with {keys[self.role]}")


# What chooses the columns when a config's data section is read (training); predict and eval add flags.
CONFIG_COLUMN_KEYS = {"text": "data.text_column", "label": "data.label_column"}


def not_utf8(source: str, line: int, byte: int, column: int) -> RnnclfError:
    """The one message for a byte that is not UTF-8, whichever reader met it."""
    return data_error(
        source,
        f"not UTF-8 text (byte 0x{byte:02x} at column {column}); re-save the file as UTF-8",
        line=line,
    )


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
    """The bad byte at `offset` of data, by line and column (characters from the line's start, from 1)."""
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    before = data[start:offset].removeprefix(codecs.BOM_UTF8)  # valid UTF-8: decoding stopped at offset
    return not_utf8(source, line, data[offset], len(before.decode("utf-8", errors="replace")) + 1)
