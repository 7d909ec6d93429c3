"""The data formats, and which one a path is in when format="auto" (a folder, or the file's extension)."""

from __future__ import annotations

import os
from pathlib import Path

from rnnclf.data.source import data_error, display_name, quote

FORMATS = ("auto", "csv", "tsv", "jsonl", "fasttext", "folder", "parquet")

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
    ".parquet": "parquet",
    ".pq": "parquet",
}
EXTENSION_HELP = (
    ".csv, .tsv/.tab, .jsonl/.ndjson/.json, .txt/.ft/.fasttext, .parquet/.pq (each optionally + .gz)"
)


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
