"""Corpora and word vectors by name: `rnnclf data list`, `rnnclf data fetch NAME`, `data.train: imdb`.

    name -> catalog entry (official HTTPS address, pinned SHA-256) -> download (resumable) -> verify ->
    unpack into rnnclf's own files (+ a ready config) -> one os.replace into the cache (or --dir)

The package, one concern a module:
- this module: the public API: `fetch`, `catalog`, `resolve_names` (a config's bare names -> fetched paths);
- `catalog` (and catalog.yaml): the corpora and vectors, their addresses, checksums and checksum sources;
- `download`: one file over HTTPS, streamed, resumable, verified;
- `unpack`: each corpus layout -> <split>.csv.gz files with `text,label` columns;
- `store`: the cache folders, the staging folder and its lock, fetching a corpus or a vectors file.

May import errors, files and data's CSV helpers. Never imports text, models, training or inference.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from rnnclf.data.formats import EXTENSIONS
from rnnclf.errors import RnnclfError
from rnnclf.fetch.catalog import CORPORA, VECTORS
from rnnclf.fetch.download import Progress, Silent
from rnnclf.fetch.store import Fetched, corpus_folder, data_home, fetch_by_name, is_complete, vectors_folder

__all__ = [
    "CORPORA",
    "VECTORS",
    "Fetched",
    "Progress",
    "catalog",
    "data_home",
    "fetch",
    "is_name",
    "resolve_names",
]

# A value ending so is a file name, never a misspelled corpus or vectors name ("glove.6B.10d" may be one).
FILE_EXTENSIONS = {*EXTENSIONS, ".gz", ".vec", ".bin", ".zip", ".pt"}
# Config keys that may name a corpus (each takes that split of it) or vectors.
DATA_KEYS = ("train", "valid", "test")


def fetch(
    name: str,
    folder: str | Path | None = None,
    progress: Progress | None = None,
    archives: list[str | Path] | None = None,
) -> Fetched:
    """Fetch the corpus or vectors called `name` into folder (default: the cache); a no-op when present.
    archives: its files downloaded by hand (`--archive`), used once their SHA-256 matches the pinned one."""
    given = [Path(archive) for archive in archives or []]
    return fetch_by_name(name, Path(folder) if folder is not None else None, progress, given)


def is_name(value: str | None) -> bool:
    """Whether a config value names a corpus or vectors (the config checks first that it is not a path)."""
    return value in CORPORA or value in VECTORS


def resolve_names(config: Any, progress: Progress | None = None) -> None:
    """Replace bare corpus names in data.train/valid/test and a vectors name in model.pretrained_vectors
    by the fetched files' paths, fetching on first use. Values that are paths are left alone."""
    progress = progress or Silent()
    for key in DATA_KEYS:
        name = getattr(config.data, key)
        if name not in CORPORA:
            refuse_misspelled_name(f"data.{key}", name, list(CORPORA), "corpus")
            continue
        folder = fetch(name, progress=progress).path
        path = folder / f"{key}.csv.gz"
        if not path.is_file():
            splits = ", ".join(sorted(file.name.split(".")[0] for file in folder.glob("*.csv.gz")))
            raise RnnclfError(f"data.{key}: corpus {name!r} has no {key} split (it has {splits})")
        setattr(config.data, key, str(path))
    name = config.model.pretrained_vectors
    if name in VECTORS:
        config.model.pretrained_vectors = str(fetch(name, progress=progress).path)
    else:
        refuse_misspelled_name("model.pretrained_vectors", name, list(VECTORS), "vectors")


def refuse_misspelled_name(key: str, value: str | None, names: list[str], kind: str) -> None:
    """A bare word that is neither a file nor a name (`data.train: imbd`): "no such file", and the name
    it is close to. The config made it a path beside the config file; what the user wrote is its last
    part. Paths with folders or an extension, and files that exist, are left to the readers."""
    if not value or Path(value).exists():
        return
    written = Path(value).name
    close = difflib.get_close_matches(written, names, n=1, cutoff=0.6)
    if Path(written).suffix.lower() in FILE_EXTENSIONS or not close:
        return
    raise RnnclfError(
        f"{key}: {value}: no such file, and {written!r} is no {kind} name; did you mean {close[0]!r}? "
        "('rnnclf data list' shows the names)"
    )


def catalog() -> list[dict[str, Any]]:
    """One row per corpus and per vectors set: what `rnnclf data list` shows (and prints with --json)."""
    rows = [
        {
            "name": corpus.name,
            "kind": "corpus",
            "title": corpus.title,
            "size": corpus.size,
            "documents": corpus.documents,
            "classes": len(corpus.labels),
            "labels": list(corpus.labels),
            "licence": corpus.licence,
            "source": corpus.source,
            "checksum": f"sha256, from {corpus.checksum_source}",
            "note": corpus.note,
            "fetched": is_complete(corpus_folder(corpus.name)),
        }
        for corpus in CORPORA.values()
    ]
    rows += [
        {
            "name": vectors.name,
            "kind": "vectors",
            "title": vectors.title,
            "size": vectors.size_hint,
            "dimension": vectors.dimension,
            "words": vectors.words,
            "licence": vectors.licence,
            "source": vectors.source,
            "checksum": f"sha256, from {vectors.checksum_source}",
            "note": "",
            "fetched": (vectors_folder() / vectors.filename).is_file(),
        }
        for vectors in VECTORS.values()
    ]
    return rows
