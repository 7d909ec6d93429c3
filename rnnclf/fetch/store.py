"""Where fetched corpora and vectors live, and how a fetch reaches them without ever leaving half of one.

    <home>/corpora/<name>/               train.csv.gz, test.csv.gz, config.yaml, corpus.json (written last)
    <home>/vectors/<file>                glove.6B.100d.txt, wiki.en.vec, ...
    <parent>/.<name>.fetching/           downloads (<file>.part while resumable) and the unpacking folder

A corpus is unpacked into the .fetching folder and moved into place with one os.replace, so its folder
exists complete or not at all; a vectors file is written through atomic_write. A transfer that stopped
early keeps its .part in .fetching (the next fetch resumes it); any other failure removes .fetching.
A lock file in .fetching lets concurrent fetches of one corpus (torchrun's processes) wait for the first.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnnclf import __version__
from rnnclf.errors import RnnclfError
from rnnclf.fetch.catalog import CORPORA, VECTORS, Corpus, WordVectors
from rnnclf.fetch.download import CHUNK, Download, Interrupted, Progress, Silent, fetch_file, file_sha256
from rnnclf.fetch.unpack import Writers, unpack
from rnnclf.files import atomic_write

MANIFEST = "corpus.json"


@dataclass
class Fetched:
    """What a fetch left: the corpus folder (or vectors file), documents per split, the ready config."""

    name: str
    path: Path
    documents: dict[str, int] = field(default_factory=dict)
    config: Path | None = None
    fetched: bool = True  # False: it was there already, nothing was done


def data_home() -> Path:
    """$RNNCLF_DATA, else $XDG_CACHE_HOME/rnnclf, else ~/.cache/rnnclf."""
    if os.environ.get("RNNCLF_DATA"):
        return Path(os.environ["RNNCLF_DATA"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnclf"


def corpus_folder(name: str) -> Path:
    return data_home() / "corpora" / name


def vectors_folder() -> Path:
    return data_home() / "vectors"


def is_complete(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


@contextlib.contextmanager
def staged(staging: Path, keep: bool = False) -> Iterator[None]:
    """Hold the staging folder's lock; on failure remove the folder, except a resumable transfer's .part.
    On success remove it too, unless `keep` (a verified archive that other vectors still need)."""
    try:
        staging.mkdir(parents=True, exist_ok=True)
        lock = (staging / "lock").open("w")
    except OSError as error:
        raise RnnclfError(f"{staging}: cannot write ({error.strerror or error})") from None
    with lock:
        with contextlib.suppress(ImportError):  # fcntl is POSIX-only; elsewhere fetches are not serialised
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        except (Interrupted, KeyboardInterrupt):
            shutil.rmtree(staging / "unpacked", ignore_errors=True)
            if {path.name for path in staging.iterdir()} <= {"lock"}:  # nothing to resume
                shutil.rmtree(staging, ignore_errors=True)
            raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if not keep:
            shutil.rmtree(staging, ignore_errors=True)


def place_archives(archives: list[Path], downloads: tuple[Download, ...], staging: Path, label: str) -> None:
    """Files the user downloaded by hand (`--archive`), each matched to one of the downloads by its
    SHA-256 and copied into the staging folder under that download's name, where the fetch then finds
    it (a final name there means a verified file; nothing is requested from the source for it)."""
    wanted = {source.sha256: source for source in downloads}
    for archive in archives:
        try:
            digest = file_sha256(archive)
        except OSError as error:
            raise RnnclfError(f"--archive {archive}: cannot read ({error.strerror or error})") from None
        source = wanted.get(digest)
        if source is None:
            expected = ", ".join(f"{each.filename} (sha256 {each.sha256[:16]}...)" for each in downloads)
            raise RnnclfError(
                f"--archive {archive}: sha256 {digest[:16]}... is not the pinned checksum of any file of "
                f"{label}; expected {expected}"
            )
        part = staging / f"{source.filename}.part"
        try:
            shutil.copyfile(archive, part)
            part.replace(staging / source.filename)
        except OSError as error:
            raise RnnclfError(f"{staging}: cannot write ({error.strerror or error})") from None


def fetch_corpus(
    corpus: Corpus, folder: Path | None, progress: Progress, archives: list[Path] | None = None
) -> Fetched:
    """Download, verify and unpack `corpus` into folder (default: the cache); a no-op when it is there.
    archives: files downloaded by hand, used instead of downloading (checked against the pinned SHA-256)."""
    target = Path(folder) if folder is not None else corpus_folder(corpus.name)
    if is_complete(target):
        return existing(corpus.name, target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RnnclfError(
            f"{target}: exists and is not a corpus fetched by rnnclf; remove it or choose another --dir"
        )
    staging = target.parent / f".{target.name}.fetching"
    with staged(staging):
        if is_complete(target):  # another process fetched it while this one waited for the lock
            return existing(corpus.name, target)
        place_archives(archives or [], corpus.downloads, staging, corpus.name)
        files = [(source, fetch_file(source, staging, corpus.name, progress)) for source in corpus.downloads]
        unpacked = staging / "unpacked"
        shutil.rmtree(unpacked, ignore_errors=True)
        unpacked.mkdir()
        writers = Writers(unpacked)
        progress.begin(f"{corpus.name}: unpacking", None)
        try:
            unpack(corpus.layout, files, writers, corpus.labels, progress.advance)
        finally:
            progress.end()
            writers.close()
        if not writers.counts.get("train") or not writers.counts.get("test"):
            raise RnnclfError(
                f"{corpus.name}: the archive has no train or no test documents in the expected place"
            )
        write_config(corpus, unpacked, target, sorted(writers.counts))
        manifest = {
            "name": corpus.name,
            "title": corpus.title,
            "source": corpus.source,
            "licence": corpus.licence,
            "downloads": [{"url": source.url, "sha256": source.sha256} for source, _ in files],
            "documents": writers.counts,
            "labels": sorted(writers.labels),
            "rnnclf_version": __version__,
        }
        atomic_write(unpacked / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
        try:
            os.replace(unpacked, target)  # onto nothing, or onto an empty folder: atomic either way
        except OSError as error:
            raise RnnclfError(f"{target}: cannot write ({error.strerror or error})") from None
    return existing(corpus.name, target, fetched=True)


def existing(name: str, folder: Path, fetched: bool = False) -> Fetched:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RnnclfError(
            f"{folder / MANIFEST}: unreadable ({error}); remove {folder} and fetch again"
        ) from None
    return Fetched(name, folder, manifest.get("documents", {}), folder / "config.yaml", fetched)


def write_config(corpus: Corpus, folder: Path, target: Path, splits: list[str]) -> None:
    """A config that trains on the corpus as it will lie in `target` (paths relative to the config file)."""
    data = {split: f"{split}.csv.gz" for split in ("train", "valid", "test") if split in splits}
    header = (
        f"# {corpus.title}, fetched by `rnnclf data fetch {corpus.name}`. Run:\n"
        f"#   rnnclf train {target / 'config.yaml'}\n"
        f"# Source: {corpus.source}; licence: {corpus.licence}.\n"
        + (f"# Note: {corpus.note}.\n" if corpus.note else "")
    )
    body = yaml.safe_dump({"data": data, **corpus.settings}, sort_keys=False, allow_unicode=True)
    atomic_write(folder / "config.yaml", header + body)


def fetch_vectors(
    vectors: WordVectors, folder: Path | None, progress: Progress, archives: list[Path] | None = None
) -> Fetched:
    """Download and verify the vectors' file (or zip archive, whose member is then extracted); archives:
    the file downloaded by hand instead (checked against the pinned SHA-256)."""
    folder = Path(folder) if folder is not None else vectors_folder()
    target = folder / vectors.filename
    if target.is_file():
        return Fetched(vectors.name, target, fetched=False)
    staging = folder / f".{vectors.download.filename}.fetching"
    # The archive stays (in its .fetching folder) while other vectors of it are still to be extracted:
    # glove.6B.zip holds four dimensions, and fetching a second one should not download 822 MB again.
    siblings = [
        other
        for other in VECTORS.values()
        if other.download == vectors.download
        and other.name != vectors.name
        and not (folder / other.filename).is_file()
    ]
    with staged(staging, keep=bool(siblings)):
        if target.is_file():
            return Fetched(vectors.name, target, fetched=False)
        place_archives(archives or [], (vectors.download,), staging, vectors.name)
        downloaded = fetch_file(vectors.download, staging, vectors.name, progress)
        if vectors.member is None:
            try:
                os.replace(downloaded, target)
            except OSError as error:
                raise RnnclfError(f"{target}: cannot write ({error.strerror or error})") from None
        else:
            extract(downloaded, vectors.member, target, vectors.name, progress)
    return Fetched(vectors.name, target)


def extract(archive: Path, member: str, target: Path, label: str, progress: Progress) -> None:
    """One file of a zip archive, written atomically to target."""
    try:
        with zipfile.ZipFile(archive) as bundle, bundle.open(member) as stream:
            progress.begin(f"{label}: unpacking", bundle.getinfo(member).file_size)

            def copy(output: Any) -> None:
                while chunk := stream.read(CHUNK):
                    output.write(chunk)
                    progress.advance(len(chunk))

            try:
                atomic_write(target, copy)
            finally:
                progress.end()
    except (zipfile.BadZipFile, KeyError, EOFError, OSError) as error:
        raise RnnclfError(f"{label}: cannot unpack {member} from {archive.name} ({error})") from None


def fetch_by_name(
    name: str,
    folder: Path | None = None,
    progress: Progress | None = None,
    archives: list[Path] | None = None,
) -> Fetched:
    """Fetch the corpus or vectors called `name` (see `rnnclf data list`); archives: its files downloaded
    by hand, used instead of downloading them once their SHA-256 matches the pinned one."""
    progress = progress or Silent()
    for archive in archives or []:
        if not Path(archive).is_file():
            raise RnnclfError(f"--archive {archive}: no such file")
    if name in CORPORA:
        return fetch_corpus(CORPORA[name], folder, progress, archives)
    if name in VECTORS:
        return fetch_vectors(VECTORS[name], folder, progress, archives)
    close = difflib.get_close_matches(name, [*CORPORA, *VECTORS], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise RnnclfError(f"unknown corpus or vectors name {name!r}; {hint}'rnnclf data list' shows them all")
