"""From a corpus's published files to rnnclf's own: <split>.csv.gz with a `text,label` header, one per split.

Each layout reads the files as published (streamed: the largest corpora do not fit in memory) and hands
(split, text, label) rows to a Writers, which owns the output files. Labels become class names (the sources
number them). Reading problems become one-line RnnclfErrors naming the file; so do write errors.
"""

from __future__ import annotations

import csv
import gzip
import io
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from rnnclf.data.delimited import allow_huge_fields
from rnnclf.errors import RnnclfError
from rnnclf.fetch.download import Download

Files = list[tuple[Download, Path]]
Advance = Callable[[int], None]

TREC_CLASSES = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "human",
    "LOC": "location",
    "NUM": "numeric",
}


class Writers:
    """out/<split>.csv.gz files, opened as their first row arrives; counts rows and classes per split."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, tuple[IO[str], Any]] = {}  # split -> (text file, csv writer)
        self.counts: dict[str, int] = {}
        self.labels: set[str] = set()

    def write(self, split: str, text: str, label: str) -> None:
        try:
            if split not in self.files:
                # mtime=0: the same corpus gives byte-identical files (and preprocessing cache keys).
                binary = gzip.GzipFile(self.folder / f"{split}.csv.gz", "wb", compresslevel=6, mtime=0)
                handle = io.TextIOWrapper(binary, encoding="utf-8", newline="")
                self.files[split] = (handle, csv.writer(handle, lineterminator="\n"))
                self.files[split][1].writerow(("text", "label"))
                self.counts[split] = 0
            self.files[split][1].writerow((text, label))
        except OSError as error:
            raise RnnclfError(f"{self.folder}: cannot write ({error.strerror or error})") from None
        self.counts[split] += 1
        self.labels.add(label)

    def close(self) -> None:
        try:
            for handle, _ in self.files.values():
                handle.close()
        except OSError as error:
            raise RnnclfError(f"{self.folder}: cannot write ({error.strerror or error})") from None


def unpack(layout: str, files: Files, writers: Writers, labels: tuple[str, ...], advance: Advance) -> None:
    """Run one layout; archive, encoding and CSV problems become 'cannot unpack' errors."""
    try:
        LAYOUTS[layout](files, writers, labels, advance)
    except RnnclfError:
        raise
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        EOFError,
        zlib.error,
        csv.Error,
        UnicodeError,
        OSError,
    ) as error:
        names = ", ".join(path.name for _, path in files)
        raise RnnclfError(f"cannot unpack {names} ({error})") from None


def layout_error(file: str, expected: str) -> RnnclfError:
    return RnnclfError(f"{file}: not the expected layout ({expected}); the source may have changed")


def members(archive: Path) -> Iterator[tuple[str, BinaryIO]]:
    """(name, stream) of each file in a tar.gz or zip archive, in archive order, read as they come."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                if not info.is_dir():
                    with bundle.open(info) as stream:
                        yield info.filename, stream  # type: ignore[misc]
        return
    with tarfile.open(archive, "r:*") as bundle:
        for member in bundle:
            stream = bundle.extractfile(member) if member.isfile() else None
            if stream is not None:
                yield member.name, stream  # type: ignore[misc]


def imdb(files: Files, writers: Writers, labels: tuple[str, ...], advance: Advance) -> None:
    """aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt (train/unsup, unlabelled, is left out)."""
    names = {"neg": labels[0], "pos": labels[1]}
    for name, stream in members(files[0][1]):
        parts = name.split("/")
        if len(parts) == 4 and parts[1] in ("train", "test") and parts[2] in names and name.endswith(".txt"):
            writers.write(parts[1], stream.read().decode("utf-8", errors="replace"), names[parts[2]])
            advance(1)


def zhang(files: Files, writers: Writers, labels: tuple[str, ...], advance: Advance) -> None:
    """Zhang et al.'s CSVs: "class number","field",... with no header; the fields are joined into the text."""
    allow_huge_fields()  # a Yahoo! answer or a Yelp review may pass csv's 128 KiB field limit
    for split, stream in split_files(files, (".csv",)):
        rows = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=""))
        for row in rows:
            number = row[0] if row else ""
            if not number.isdigit() or not 1 <= int(number) <= len(labels) or len(row) < 2:
                raise layout_error(f"{split}.csv", f"row {rows.line_num}: a class number 1-{len(labels)}")
            # Line breaks inside a text are written as a backslash and "n" in these files.
            text = " ".join(field.strip() for field in row[1:] if field.strip()).replace("\\n", "\n")
            writers.write(split, text, labels[int(number) - 1])
            advance(1)


def split_files(files: Files, suffixes: tuple[str, ...]) -> Iterator[tuple[str, BinaryIO]]:
    """(split, stream): a download that is one split, or each train/test file inside an archive."""
    for download, path in files:
        if download.split is not None:
            with path.open("rb") as stream:
                yield download.split, stream
            continue
        for name, stream in members(path):
            split, _, suffix = name.rsplit("/", 1)[-1].partition(".")
            if split in ("train", "test") and f".{suffix}" in suffixes:
                yield split, stream


def trec(files: Files, writers: Writers, labels: tuple[str, ...], advance: Advance) -> None:
    """Lines "COARSE:fine question"; the coarse class is kept, named as in data/train.csv.gz."""
    for split, stream in split_files(files, ()):
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:  # one question in train has a stray 0xF0 byte
                line = raw.decode("latin-1")
            tag, _, text = line.strip().partition(" ")
            coarse = tag.split(":")[0]
            if coarse not in TREC_CLASSES:
                raise layout_error(download_name(files, split), f"line {number}: a COARSE:fine class")
            writers.write(split, text, TREC_CLASSES[coarse])
            advance(1)


def download_name(files: Files, split: str) -> str:
    return next(path.name for download, path in files if download.split == split)


def sst2(files: Files, writers: Writers, labels: tuple[str, ...], advance: Advance) -> None:
    """GLUE's SST-2/{train,dev}.tsv: "sentence<TAB>label" (0, 1) after a header; dev becomes the test split
    (GLUE's test.tsv has no labels)."""
    splits = {"SST-2/train.tsv": "train", "SST-2/dev.tsv": "test"}
    for name, stream in members(files[0][1]):
        if name not in splits:
            continue
        for number, raw in enumerate(stream, start=1):
            sentence, _, label = raw.decode("utf-8").rstrip("\r\n").rpartition("\t")
            if number == 1:
                continue  # the header
            if label not in ("0", "1"):
                raise layout_error(name, f"line {number}: a 0 or 1 label after a tab")
            writers.write(splits[name], sentence, labels[int(label)])
            advance(1)


def newsgroups(files: Files, writers: Writers, labels: tuple[str, ...], advance: Advance) -> None:
    """20news-bydate-{train,test}/<group>/<number>: one Latin-1 message a file (as in scikit-learn)."""
    for name, stream in members(files[0][1]):
        parts = name.split("/")
        if len(parts) == 3 and parts[0] in ("20news-bydate-train", "20news-bydate-test"):
            writers.write(parts[0].rsplit("-", 1)[1], stream.read().decode("latin-1"), parts[1])
            advance(1)


LAYOUTS: dict[str, Callable[[Files, Writers, tuple[str, ...], Advance], None]] = {
    "imdb": imdb,
    "zhang": zhang,
    "trec": trec,
    "sst2": sst2,
    "newsgroups": newsgroups,
}
