"""The catalog: the corpora and word vectors rnnclf fetches by name, read from catalog.yaml beside this file.

The YAML holds the data (addresses, SHA-256 checksums and, in comments, where each checksum was published);
this module turns it into Corpus and WordVectors records. GloVe archives expand to one entry a dimension
(glove.6B.zip -> glove.6B.50d ... glove.6B.300d), as torchtext's GloVe(name="6B", dim=100) named them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from rnnclf.fetch.download import Download


@dataclass(frozen=True)
class Corpus:
    """A labelled corpus: its files, how they unpack (layout) and what `rnnclf data list` says of it."""

    name: str
    title: str
    downloads: tuple[Download, ...]
    layout: str  # the unpack.LAYOUTS function that turns the downloads into train/test files
    labels: tuple[str, ...]  # class names, in the order of the source's class numbers
    documents: dict[str, int]  # split -> documents, as published
    licence: str
    source: str  # the corpus's home page
    checksum_source: str
    settings: dict[str, Any] = field(default_factory=dict)  # config sections for the ready config.yaml
    note: str = ""
    size_hint: int = 0  # bytes to download, where no checksum source records the exact size

    @property
    def size(self) -> int:
        return sum(download.size or 0 for download in self.downloads) or self.size_hint


@dataclass(frozen=True)
class WordVectors:
    """One vectors file: the download it comes in, and the file inside it when that is a zip archive."""

    name: str
    title: str
    download: Download
    member: str | None  # the file inside the zip; None: the download is the vectors file itself
    dimension: int
    words: int
    licence: str
    source: str
    checksum_source: str
    size_hint: int = 0  # bytes to download, as the publisher's page gives them

    @property
    def filename(self) -> str:
        return self.member or self.download.filename


def download(entry: dict[str, Any]) -> Download:
    filename = entry.get("file") or entry["url"].rsplit("/", 1)[-1]
    return Download(entry["url"], entry["sha256"], filename, entry.get("size"), entry.get("split"))


def corpus(name: str, entry: dict[str, Any]) -> Corpus:
    return Corpus(
        name=name,
        downloads=tuple(download(item) for item in entry.pop("downloads")),
        labels=tuple(entry.pop("labels")),
        **entry,
    )


def glove(corpus: str, archive: dict[str, Any], about: dict[str, Any]) -> list[WordVectors]:
    """One entry a dimension of a GloVe archive; the zip holds glove.<corpus>.<dimension>d.txt files."""
    return [
        WordVectors(
            name=f"glove.{corpus}.{dimension}d",
            title=f"GloVe {corpus}, {dimension}d ({archive['about']})",
            download=download(archive),
            member=f"glove.{corpus}.{dimension}d.txt",
            dimension=dimension,
            words=archive["words"],
            size_hint=archive["size_hint"],
            **about,
        )
        for dimension in archive["dimensions"]
    ]


def load() -> tuple[dict[str, Corpus], dict[str, WordVectors]]:
    text = resources.files("rnnclf.fetch").joinpath("catalog.yaml").read_text(encoding="utf-8")
    catalog = yaml.safe_load(text)
    corpora = {name: corpus(name, entry) for name, entry in catalog["corpora"].items()}
    vectors: dict[str, WordVectors] = {}
    for name, entry in catalog["vectors"].items():
        if name == "glove":
            archives = entry.pop("archives")
            for key, archive in archives.items():
                vectors.update((item.name, item) for item in glove(str(key), archive, entry))
        else:  # a plain vectors file, such as fastText's wiki.en.vec
            vectors[name] = WordVectors(
                name,
                entry["title"],
                download(entry),
                None,
                entry["dimension"],
                entry["words"],
                entry["licence"],
                entry["source"],
                entry["checksum_source"],
            )
    return corpora, vectors


CORPORA, VECTORS = load()
