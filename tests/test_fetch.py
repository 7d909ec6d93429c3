"""Corpora and word vectors by name, fetched from a local HTTP server (127.0.0.1) that serves small archives
made here with each corpus's real layout, under the catalog's real file names and splits; only the address,
checksum and size of each download are swapped for the local copy's.

Checked: files, config and manifest written; a second fetch is a no-op; every failure (checksum mismatch,
truncated transfer, HTTP 500/404, a full disk while downloading or unpacking) is exit code 2 with one
'error:' line and leaves no corpus; an interrupted fetch resumes (Range) or restarts cleanly; names in a
config are fetched on first use, and training runs on them.
"""

from __future__ import annotations

import csv
import errno
import gzip
import hashlib
import io
import json
import re
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import make_documents
from test_cli import cli, ok, user_error

from rnnclf import config as config_module
from rnnclf.data import read_examples
from rnnclf.errors import RnnclfError
from rnnclf.fetch import CORPORA, VECTORS, fetch, resolve_names
from rnnclf.fetch.download import Silent
from rnnclf.text.vectors import read_vectors

# --- a local server -----------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """GET /<file>: the bytes published under that name, honouring "Range: bytes=N-" unless told not to."""

    def do_GET(self) -> None:  # http.server calls do_<METHOD>
        site: Site = self.server.site  # type: ignore[attr-defined]
        name = self.path.lstrip("/")
        site.requests.append((name, self.headers.get("Range")))
        if name in site.status:
            self.send_error(site.status[name])
            return
        if name not in site.files:
            self.send_error(404)
            return
        body = site.files[name]
        start = 0
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if wanted and site.ranges:
            start = int(wanted.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        sent = body[start:]
        if name in site.cut:  # the connection drops after this many bytes
            sent = sent[: site.cut.pop(name)]
        self.wfile.write(sent)

    def log_message(self, *args: object) -> None:
        pass


class Site:
    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.url = url
        self.monkeypatch = monkeypatch
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.cut: dict[str, int] = {}
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []

    def publish(self, name: str, files: dict[str, bytes], **changes: object) -> None:
        """Serve `files` under the corpus's real file names, and point its catalog entry at them."""
        corpus = CORPORA[name]
        self.files.update(files)
        downloads = tuple(
            replace(
                source,
                url=f"{self.url}/{source.filename}",
                sha256=hashlib.sha256(files[source.filename]).hexdigest(),
                size=len(files[source.filename]),
            )
            for source in corpus.downloads
        )
        self.monkeypatch.setitem(CORPORA, name, replace(corpus, downloads=downloads, **changes))

    def publish_vectors(self, archive: bytes) -> None:
        """Serve a glove.6B.zip stand-in for every glove.6B.* entry."""
        self.files["glove.6B.zip"] = archive
        for name, vectors in VECTORS.items():
            if name.startswith("glove.6B."):
                source = replace(
                    vectors.download,
                    url=f"{self.url}/glove.6B.zip",
                    sha256=hashlib.sha256(archive).hexdigest(),
                )
                self.monkeypatch.setitem(VECTORS, name, replace(vectors, download=source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("RNNCLF_DATA", str(tmp_path / "home"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.site = Site(f"http://127.0.0.1:{server.server_port}", monkeypatch)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server.site  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


# --- archives with the real layouts -------------------------------------------------------------------------


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_file(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def imdb_archive(train: int = 4, test: int = 2) -> bytes:
    """aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, plus the unlabelled and extra files to skip."""
    files = {"aclImdb/README": b"readme", "aclImdb/train/unsup/0_0.txt": b"not labelled"}
    documents = make_documents(2 * (train + test), seed=5)
    for split, count in (("train", train), ("test", test)):
        for number in range(count):
            for polarity, rating in (("pos", 9), ("neg", 2)):
                text = f"{documents.pop()[0]} {'great' if polarity == 'pos' else 'awful'} <br /> ok"
                files[f"aclImdb/{split}/{polarity}/{number}_{rating}.txt"] = text.encode()
    return tar_gz(files)


def read(path: Path) -> list[tuple[str, str]]:
    examples = read_examples(path)
    return list(zip(examples.texts, examples.labels, strict=True))


# --- success, no-op, and each layout ------------------------------------------------------------------------


def test_fetch_imdb_writes_files_config_and_manifest_then_second_fetch_is_a_no_op(
    site: Site, tmp_path: Path
) -> None:
    site.publish("imdb", {"aclImdb_v1.tar.gz": imdb_archive()})
    result = ok(cli("data", "fetch", "imdb"))
    folder = tmp_path / "home" / "corpora" / "imdb"
    assert str(folder) in result.stdout and "train with: rnnclf train" in result.stdout
    assert sorted(path.name for path in folder.iterdir()) == [
        "config.yaml",
        "corpus.json",
        "test.csv.gz",
        "train.csv.gz",
    ]
    train = read(folder / "train.csv.gz")
    assert len(train) == 8 and {label for _, label in train} == {"negative", "positive"}
    assert all("great" in text for text, label in train if label == "positive")
    assert len(read(folder / "test.csv.gz")) == 4
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["data"] == {"train": "train.csv.gz", "test": "test.csv.gz"}
    manifest = json.loads((folder / "corpus.json").read_text())
    assert manifest["documents"] == {"train": 8, "test": 4}
    assert not list(folder.parent.glob(".*"))  # the staging folder is gone

    requests = len(site.requests)
    again = ok(cli("data", "fetch", "imdb"))
    assert "already in" in again.stdout and len(site.requests) == requests
    listed = json.loads(ok(cli("data", "list", "--json")).stdout)
    assert next(row for row in listed if row["name"] == "imdb")["fetched"] is True


def test_fetch_into_a_chosen_folder(site: Site, tmp_path: Path) -> None:
    site.publish("imdb", {"aclImdb_v1.tar.gz": imdb_archive()})
    ok(cli("data", "fetch", "imdb", "--dir", tmp_path / "mine"))
    assert (tmp_path / "mine" / "train.csv.gz").is_file()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    user_error(cli("data", "fetch", "imdb", "--dir", tmp_path / "taken"), "not a corpus fetched by rnnclf")


def zhang_csv(rows: list[tuple[int, ...]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def fetched(site: Site, name: str, files: dict[str, bytes]) -> tuple[list[tuple[str, str]], ...]:
    """Publish `files` as corpus `name`, fetch it, and return its train and test rows."""
    site.publish(name, files)
    folder = fetch(name).path
    return read(folder / "train.csv.gz"), read(folder / "test.csv.gz")


def test_zhang_layouts_plain_files_and_archive(site: Site) -> None:
    train, test = fetched(
        site,
        "ag_news",
        {
            "train.csv": zhang_csv([(3, "Stocks up", "Wall St. \\n rallied"), (2, "Goal!", 'A "late" win')]),
            "test.csv": zhang_csv([(4, "New chip", "Faster")]),
        },
    )
    assert train == [("Stocks up Wall St. \n rallied", "Business"), ('Goal! A "late" win', "Sports")]
    assert test == [("New chip Faster", "Sci/Tech")]
    archive = {
        "yahoo_answers_csv/classes.txt": b"Society & Culture\n",
        "yahoo_answers_csv/train.csv": zhang_csv([(10, "Who?", "", "The senate.")]),
        "yahoo_answers_csv/test.csv": zhang_csv([(1, "Why?", "Asking", "Because")]),
    }
    train, test = fetched(site, "yahoo_answers", {"yahoo_answers_csv.tgz": tar_gz(archive)})
    assert train == [("Who? The senate.", "Politics & Government")]
    assert test == [("Why? Asking Because", "Society & Culture")]


def test_trec_sst2_and_newsgroups_layouts(site: Site) -> None:
    questions = b"NUM:date When was it ?\nLOC:city Where is sister\xf0city ?\n"
    train, test = fetched(
        site, "trec", {"train_5500.label": questions, "TREC_10.label": b"HUM:ind Who wrote Hamlet ?\n"}
    )
    assert train == [("When was it ?", "numeric"), ("Where is sister\u00f0city ?", "location")]
    assert test == [("Who wrote Hamlet ?", "human")]

    sst = {
        "SST-2/train.tsv": b'sentence\tlabel\na fine film \t1\nthe dullest "thing" \t0\n',
        "SST-2/dev.tsv": b"sentence\tlabel\nwonderful \t1\n",
        "SST-2/test.tsv": b"index\tsentence\n0\tno label here\n",
    }
    train, test = fetched(site, "sst2", {"SST-2.zip": zip_file(sst)})
    assert train == [("a fine film ", "positive"), ('the dullest "thing" ', "negative")]
    assert test == [("wonderful ", "positive")]

    news = {
        "20news-bydate-train/sci.space/1": "From: a\n\nOrbits and \xe9t\xe9".encode("latin-1"),
        "20news-bydate-train/rec.autos/2": b"Cars",
        "20news-bydate-test/sci.space/3": b"Mars",
    }
    train, test = fetched(site, "20newsgroups", {"20news-bydate.tar.gz": tar_gz(news)})
    assert sorted(train) == [("Cars", "rec.autos"), ("From: a\n\nOrbits and été", "sci.space")]
    assert test == [("Mars", "sci.space")]


# --- failures: one line, exit 2, no corpus ------------------------------------------------------------------


def no_corpus(tmp_path: Path, keeps_download: bool = False) -> None:
    corpora = tmp_path / "home" / "corpora"
    assert not (corpora / "imdb").exists()
    staged = list(corpora.glob(".imdb.fetching/*")) if corpora.exists() else []
    assert not [path for path in staged if path.name == "unpacked"]
    assert bool([path for path in staged if path.suffix == ".part"]) == keeps_download


def test_checksum_mismatch_deletes_the_download(site: Site, tmp_path: Path) -> None:
    site.publish("imdb", {"aclImdb_v1.tar.gz": imdb_archive()})
    entry = CORPORA["imdb"]
    source = replace(entry.downloads[0], sha256="0" * 64)
    site.monkeypatch.setitem(CORPORA, "imdb", replace(entry, downloads=(source,)))
    user_error(cli("data", "fetch", "imdb"), "does not match its pinned checksum", "was deleted")
    no_corpus(tmp_path)


@pytest.mark.parametrize("status", [500, 404])
def test_server_error(site: Site, tmp_path: Path, status: int) -> None:
    site.publish("imdb", {"aclImdb_v1.tar.gz": imdb_archive()})
    site.status["aclImdb_v1.tar.gz"] = status
    user_error(cli("data", "fetch", "imdb"), f"HTTP {status}", "aclImdb_v1.tar.gz")
    no_corpus(tmp_path)


def test_truncated_download_resumes_with_a_range_request(site: Site, tmp_path: Path) -> None:
    archive = imdb_archive()
    site.publish("imdb", {"aclImdb_v1.tar.gz": archive})
    site.cut["aclImdb_v1.tar.gz"] = 200
    user_error(cli("data", "fetch", "imdb"), f"stopped after 200 of {len(archive):,} bytes", "run the same")
    no_corpus(tmp_path, keeps_download=True)
    ok(cli("data", "fetch", "imdb"))
    assert site.requests[-1] == ("aclImdb_v1.tar.gz", "bytes=200-")
    assert len(read(tmp_path / "home" / "corpora" / "imdb" / "train.csv.gz")) == 8


def test_server_ignoring_range_restarts_the_download(site: Site, tmp_path: Path) -> None:
    site.publish("imdb", {"aclImdb_v1.tar.gz": imdb_archive()})
    site.cut["aclImdb_v1.tar.gz"] = 200
    site.ranges = False
    user_error(cli("data", "fetch", "imdb"), "stopped after")
    ok(cli("data", "fetch", "imdb"))
    assert len(read(tmp_path / "home" / "corpora" / "imdb" / "test.csv.gz")) == 4


def test_ctrl_c_keeps_the_download_for_the_next_fetch(site: Site, tmp_path: Path) -> None:
    site.publish("imdb", {"aclImdb_v1.tar.gz": imdb_archive()})

    class Interrupting(Silent):
        def advance(self, amount: int) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch("imdb", progress=Interrupting())
    no_corpus(tmp_path, keeps_download=True)
    assert fetch("imdb").fetched


class FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, handle: io.BufferedIOBase) -> None:
        self.handle = handle

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def truncate(self, size: int) -> None:
        self.handle.truncate(size)

    def seek(self, offset: int) -> None:
        self.handle.seek(offset)

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_downloading(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site.publish("imdb", {"aclImdb_v1.tar.gz": imdb_archive()})
    real_open = Path.open

    def open_full(path: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        handle = real_open(path, mode, *args, **kwargs)  # type: ignore[arg-type]
        return FullDisk(handle) if path.suffix == ".part" else handle

    monkeypatch.setattr(Path, "open", open_full)
    user_error(cli("data", "fetch", "imdb"), "No space left on device")
    no_corpus(tmp_path)


def test_disk_full_while_unpacking(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site.publish("imdb", {"aclImdb_v1.tar.gz": imdb_archive()})

    def full(self: gzip.GzipFile, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gzip.GzipFile, "write", full)
    user_error(cli("data", "fetch", "imdb"), "No space left on device")
    no_corpus(tmp_path)
    assert not (tmp_path / "home" / "corpora" / ".imdb.fetching").exists()


def test_not_an_archive_and_plain_http_elsewhere_and_unknown_names(site: Site, tmp_path: Path) -> None:
    site.publish("imdb", {"aclImdb_v1.tar.gz": b"not a tar file at all"})
    user_error(cli("data", "fetch", "imdb"), "cannot unpack aclImdb_v1.tar.gz")
    no_corpus(tmp_path)
    entry = CORPORA["imdb"]
    source = replace(entry.downloads[0], url="http://example.com/aclImdb_v1.tar.gz")
    site.monkeypatch.setitem(CORPORA, "imdb", replace(entry, downloads=(source,)))
    user_error(cli("data", "fetch", "imdb"), "only HTTPS")
    source = replace(entry.downloads[0], url="http://127.0.0.1:9/aclImdb_v1.tar.gz")  # nothing listens there
    site.monkeypatch.setitem(CORPORA, "imdb", replace(entry, downloads=(source,)))
    user_error(cli("data", "fetch", "imdb"), "cannot reach http://127.0.0.1:9/")
    assert not (tmp_path / "home" / "corpora" / ".imdb.fetching").exists()
    user_error(cli("data", "fetch", "imbd"), "unknown corpus or vectors name 'imbd'", "did you mean 'imdb'?")


# --- word vectors -------------------------------------------------------------------------------------------


def test_vectors_by_name_extract_each_dimension_from_one_download(site: Site, tmp_path: Path) -> None:
    site.publish_vectors(
        zip_file({"glove.6B.50d.txt": b"film 0.5 0.25\ngood 1 2\n", "glove.6B.100d.txt": b"film 1 2 3\n"})
    )
    first = fetch("glove.6B.50d")
    assert first.path == tmp_path / "home" / "vectors" / "glove.6B.50d.txt"
    assert read_vectors(first.path, {"film", "good"}, 2) == {"film": [0.5, 0.25], "good": [1.0, 2.0]}
    assert fetch("glove.6B.100d").path.read_text() == "film 1 2 3\n"
    assert [name for name, _ in site.requests] == ["glove.6B.zip"]  # the second dimension needed no download
    assert not fetch("glove.6B.50d").fetched


# --- names in a config --------------------------------------------------------------------------------------

NAMED_CONFIG = """\
data:
  train: imdb
  test: imdb
text:
  min_freq: 1
model:
  embedding_dim: 2
  hidden_dim: 8
  pretrained_vectors: glove.6B.50d
train:
  epochs: 1
  batch_size: 8
  device: cpu
  baseline: false
output:
  plots: false
"""


def test_names_in_a_config_are_fetched_on_first_use_and_train(site: Site, tmp_path: Path) -> None:
    site.publish("imdb", {"aclImdb_v1.tar.gz": imdb_archive(train=20, test=5)})
    site.publish_vectors(zip_file({"glove.6B.50d.txt": b"great 0.5 0.25\n"}))
    config = tmp_path / "named.yaml"
    config.write_text(NAMED_CONFIG)
    settings = config_module.load(config)
    assert (settings.data.train, settings.model.pretrained_vectors) == ("imdb", "glove.6B.50d")
    result = ok(cli("train", config))
    assert "pretrained vectors: 1 of" in result.stdout
    saved = yaml.safe_load(next((tmp_path / "runs").glob("named-*/config.yaml")).read_text())
    assert saved["data"]["train"] == str(tmp_path / "home" / "corpora" / "imdb" / "train.csv.gz")
    assert saved["model"]["pretrained_vectors"] == str(tmp_path / "home" / "vectors" / "glove.6B.50d.txt")


def test_a_path_wins_over_a_name_and_a_missing_split_is_named(site: Site, tmp_path: Path) -> None:
    (tmp_path / "imdb").mkdir()
    config = tmp_path / "local.yaml"
    config.write_text("data:\n  train: imdb\n  valid: sst2\n")
    settings = config_module.load(config)
    assert settings.data.train == str(tmp_path / "imdb")
    site.publish(
        "sst2",
        {"SST-2.zip": zip_file({"SST-2/train.tsv": b"s\tl\na\t1\n", "SST-2/dev.tsv": b"s\tl\nb\t0\n"})},
    )
    with pytest.raises(RnnclfError, match=r"data\.valid: corpus 'sst2' has no valid split"):
        resolve_names(settings)


# --- the catalog itself -------------------------------------------------------------------------------------


def test_catalog_pins_https_addresses_and_sha256_checksums() -> None:
    required = {
        "imdb",
        "ag_news",
        "dbpedia",
        "yelp_polarity",
        "yahoo_answers",
        "trec",
        "sst2",
        "20newsgroups",
    }
    assert required <= set(CORPORA)
    sources = [source for corpus in CORPORA.values() for source in corpus.downloads]
    sources += [vectors.download for vectors in VECTORS.values()]
    for source in sources:
        assert source.url.startswith("https://"), source.url
        assert re.fullmatch(r"[0-9a-f]{64}", source.sha256), source.url
    assert {"glove.6B.100d", "glove.840B.300d", "glove.twitter.27B.25d", "fasttext.wiki.en.300d"} <= set(
        VECTORS
    )
    listed = ok(cli("data", "list")).stdout
    for name in required:
        assert name in listed


# --- files downloaded by hand, and misspelled names --------------------------------------------------------


def unreachable(site: Site, name: str) -> None:
    """Point every download of corpus `name` at an address where nothing listens (checksums stay pinned)."""
    entry = CORPORA[name]
    downloads = tuple(
        replace(source, url=f"http://127.0.0.1:9/{source.filename}") for source in entry.downloads
    )
    site.monkeypatch.setitem(CORPORA, name, replace(entry, downloads=downloads))


def test_an_unreachable_source_says_how_to_use_a_file_downloaded_by_hand(site: Site, tmp_path: Path) -> None:
    archive = imdb_archive()
    site.publish("imdb", {"aclImdb_v1.tar.gz": archive})
    unreachable(site, "imdb")
    user_error(
        cli("data", "fetch", "imdb"),
        "cannot reach http://127.0.0.1:9/aclImdb_v1.tar.gz",
        "download aclImdb_v1.tar.gz by hand",
        "rnnclf data fetch imdb --archive PATH",
        "SHA-256",
    )
    (tmp_path / "wrong.tar.gz").write_bytes(archive[:-1])
    user_error(
        cli("data", "fetch", "imdb", "--archive", tmp_path / "wrong.tar.gz"), "not the pinned checksum"
    )
    no_corpus(tmp_path)
    user_error(
        cli("data", "fetch", "imdb", "--archive", tmp_path / "absent.tar.gz"), "absent.tar.gz: no such file"
    )
    (tmp_path / "by-hand.tar.gz").write_bytes(archive)
    result = ok(cli("data", "fetch", "imdb", "--archive", tmp_path / "by-hand.tar.gz"))
    assert "train with: rnnclf train" in result.stdout and not site.requests  # nothing was downloaded
    assert len(read(tmp_path / "home" / "corpora" / "imdb" / "train.csv.gz")) == 8


def test_a_corpus_of_several_files_takes_each_by_hand(site: Site, tmp_path: Path) -> None:
    train = "".join(f'"{1 + i % 4}","title {i}","text {i}"\n' for i in range(8)).encode()
    test = b'"2","t","sports text"\n"1","w","world text"\n'
    site.publish("ag_news", {"train.csv": train, "test.csv": test})
    unreachable(site, "ag_news")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "test.csv").write_bytes(test)  # any name: each file is told by its checksum
    (tmp_path / "train-copy.csv").write_bytes(train)
    args = ["--archive", tmp_path / "a" / "test.csv", "--archive", tmp_path / "train-copy.csv"]
    ok(cli("data", "fetch", "ag_news", *args))
    assert len(read(tmp_path / "home" / "corpora" / "ag_news" / "test.csv.gz")) == 2


def test_a_misspelled_corpus_name_in_a_config_says_no_such_file_and_the_name(tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("data:\n  train: imbd\n")
    user_error(cli("train", config), "data.train", "imbd: no such file", "did you mean 'imdb'?")
    settings = config_module.load(config)
    with pytest.raises(RnnclfError, match=r"no such file.*did you mean 'glove\.6B\.100d'"):
        settings.data.train = str(tmp_path / "typo.yaml")
        settings.model.pretrained_vectors = str(tmp_path / "glove.6B.100")
        resolve_names(settings)
