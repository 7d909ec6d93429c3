"""Writing files so that a crash never leaves half of one: atomic_write, the one writer every module uses.

    temporary file in the target's folder -> write -> flush + fsync -> os.replace -> fsync the folder

A reader (or a crash at any moment, SIGKILL included) sees the old file or the new one, never a torn
one. The file gets the permissions the user's umask gives (tempfile.mkstemp alone would make it 0600).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from rnnclf.errors import RnnclfError


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    current = os.umask(0o022)
    os.umask(current)
    return current


def atomic_write(path: str | Path, content: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write `content` (bytes, text as UTF-8, or a function that writes to a binary file) to `path`
    atomically. OSError becomes a one-line RnnclfError naming the file; nothing is left behind."""
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise RnnclfError(f"{path}: cannot write ({err.strerror or err})") from None
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as file:
            if callable(content):
                content(file)
            else:
                file.write(content.encode("utf-8") if isinstance(content, str) else content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise RnnclfError(f"{path}: cannot write ({err.strerror or err})") from None
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fsync(descriptor)
    os.close(descriptor)
