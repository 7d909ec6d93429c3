"""One file from the web onto disk: HTTPS only, streamed, resumable, checked against a pinned SHA-256.

    <folder>/<name>.part  --(HTTP GET, Range: bytes=N- when a .part is there)-->  sha256 check  -->  <name>

A file only gets its final name once its checksum matched, so a final name means a verified file. A transfer
that stops early (connection lost, timeout, Ctrl-C) keeps its .part, and the next call asks the server for
the rest (a server that ignores Range sends everything again: the .part is restarted). A checksum or size
mismatch deletes the .part: a wrong file cannot be resumed into a right one.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rnnclf import __version__
from rnnclf.errors import RnnclfError

CHUNK = 1 << 20
TIMEOUT = 60  # seconds without a byte before the transfer counts as stopped (resumable)


class Progress(Protocol):
    """What a download (or an unpacking) tells its caller as it goes; render.py draws it as a bar."""

    def begin(self, label: str, total: int | None, done: int = 0) -> None: ...

    def advance(self, amount: int) -> None: ...

    def end(self) -> None: ...


class Silent:
    """A Progress that shows nothing (library calls without a display)."""

    def begin(self, label: str, total: int | None, done: int = 0) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def end(self) -> None:
        pass


@dataclass(frozen=True)
class Download:
    """A file at its official address, with the SHA-256 its publisher (or a trusted loader) recorded."""

    url: str
    sha256: str
    filename: str
    size: int | None = None  # bytes, where the checksum's source records it (catches a truncation early)
    split: str | None = None  # "train"/"test" for a file that is one split; None for an archive


class Interrupted(RnnclfError):
    """The transfer stopped before the end; the .part is kept and the next fetch resumes it."""


def is_local(url: str) -> bool:
    """Plain HTTP is refused except from this machine (the tests' server, a local mirror)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_scheme(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme != "https" and not (scheme == "http" and is_local(url)):
        raise RnnclfError(f"refusing to download {url}: only HTTPS addresses are allowed")


class SecureRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects (mirrors, CDNs) but never from HTTPS down to plain HTTP."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        check_scheme(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(url: str, start: int) -> http.client.HTTPResponse:
    """GET url, asking for the bytes from `start` on when resuming."""
    check_scheme(url)
    headers = {"User-Agent": f"rnnclf/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    opener = urllib.request.build_opener(SecureRedirects)
    return opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)


def fetch_file(source: Download, folder: Path, label: str, progress: Progress) -> Path:
    """source into folder/source.filename, verified; returns the path. Errors are one-line RnnclfErrors."""
    final = folder / source.filename
    if final.is_file():
        return final  # only a verified file gets its final name
    part = folder / f"{source.filename}.part"
    start = part.stat().st_size if part.is_file() else 0
    if source.size is not None and start > source.size:
        part.unlink()
        start = 0
    if source.size is None or start < source.size:
        start = transfer(source, part, start, label, progress)
    try:
        verify(source, part, label)
        part.replace(final)
    except OSError as error:
        raise RnnclfError(f"{part}: cannot read or rename ({error.strerror or error})") from None
    return final


def transfer(source: Download, part: Path, start: int, label: str, progress: Progress) -> int:
    """Append the rest of the file to part; returns its final size. Stops early -> Interrupted."""
    try:
        response = open_url(source.url, start)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # the range is past the end: the .part is stale, start again
            part.unlink()
            return transfer(source, part, 0, label, progress)
        raise RnnclfError(
            f"{label}: download failed: HTTP {error.code} {error.reason} from {source.url}; "
            + by_hand(label, source)
        ) from None
    except (urllib.error.URLError, OSError) as error:
        # Offline or a timeout: passing, so a .part from an earlier try is kept for the next one.
        reason = getattr(error, "reason", None) or error
        raise Interrupted(
            f"{label}: cannot reach {source.url} ({reason}); run the same command again to resume, or "
            + by_hand(label, source)
        ) from None
    with response:
        start = resumed_from(response, start)
        total = expected_size(response, start, source)
        progress.begin(f"{label}: {source.filename}", total, start)
        try:
            size = stream(response, part, start, progress.advance)
        finally:
            progress.end()
    if total is not None and size < total:
        raise Interrupted(
            f"{label}: the download of {source.filename} stopped after {size:,} of {total:,} bytes; "
            "run the same command again to resume it"
        )
    return size


def by_hand(label: str, source: Download) -> str:
    """How to use a copy fetched some other way: it is checked against the same pinned SHA-256."""
    return (
        f"download {source.filename} by hand (from {source.url}) and run: rnnclf data fetch {label} "
        "--archive PATH (checked against its pinned SHA-256)"
    )


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks (archives are hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def resumed_from(response: http.client.HTTPResponse, start: int) -> int:
    """Where the response's bytes begin: `start` if the server honoured the Range, else 0."""
    if response.status == 206:
        match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == start:
            return start
        raise RnnclfError(f"{response.url}: the server answered a resumed download with the wrong range")
    return 0  # 200: the whole file again (the server ignored Range)


def expected_size(response: http.client.HTTPResponse, start: int, source: Download) -> int | None:
    if source.size is not None:
        return source.size
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def stream(response: http.client.HTTPResponse, part: Path, start: int, advance: Callable[[int], None]) -> int:
    """Write the response body after the first `start` bytes of part; returns part's size."""
    size = start
    try:
        with part.open("r+b" if start else "wb") as output:
            output.truncate(start)
            output.seek(start)
            while chunk := response.read(CHUNK):
                output.write(chunk)
                size += len(chunk)
                advance(len(chunk))
    except (http.client.IncompleteRead, ConnectionError, TimeoutError):
        pass  # a short transfer: the caller compares the size with the expected one
    except OSError as error:
        raise RnnclfError(f"{part}: cannot write ({error.strerror or error})") from None
    return size


def verify(source: Download, part: Path, label: str) -> None:
    """The whole file's SHA-256 (and size) against the pinned ones; a mismatch deletes the file."""
    digest = hashlib.sha256()
    with part.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    size = part.stat().st_size
    if digest.hexdigest() != source.sha256 or (source.size is not None and size != source.size):
        part.unlink()
        raise RnnclfError(
            f"{label}: {source.filename} from {source.url} does not match its pinned checksum (sha256 "
            f"{digest.hexdigest()[:16]}..., {size:,} bytes; expected {source.sha256[:16]}...); "
            "the file was deleted: try again later, and report it if it persists"
        )
