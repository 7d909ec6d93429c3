"""Folder-per-class data sets: <folder>/<class>/<document>.txt, one document per file (.txt.gz too)."""

from __future__ import annotations

import os
from pathlib import Path

from rnnclf.data.source import data_error, decode, display_name, log, plural, quote, read_bytes

FOLDER_SUFFIXES = (".txt", ".txt.gz")


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
