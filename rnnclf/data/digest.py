"""Content digests of data sets (a file, or the documents of a class folder), used as cache keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rnnclf.data.folders import folder_files
from rnnclf.data.source import data_error, display_name


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
