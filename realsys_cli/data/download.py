"""Fetching a dataset's files over HTTP: resumable, verified, mirrored, and never a long wait.

One file at a time (`fetch`):

  <dir>/<name>.part   grows as bytes arrive; a Ctrl-C or a dropped connection leaves it, and
                      the next attempt asks for the rest with an HTTP Range request
  <dir>/<name>        appears (an atomic rename) only once its SHA-256 matched: a file under its
                      final name is always complete and verified

A file whose SHA-256 does not match is kept as `<name>.unverified` and named in a one-line
error with both sums; `REALSYS_DATASETS_ACCEPT=<sha256>` accepts it without downloading again.

Mirrors: `REALSYS_DATASETS_MIRROR=URL` fetches every file as `URL/<the upstream base name>` (a
`{name}` in URL is replaced by the dataset's name, for mirrors that keep one folder per dataset,
e.g. mnist and fashion_mnist, whose files have the same names). A `SHA256SUMS` file beside them
(`<sha256>  <name>` lines) replaces the built-in sums.

`REALSYS_NO_DOWNLOAD=1` (or `--no-download`, which calls `forbid()`) forbids any download. Before
the first byte the host is reached with a short timeout, so a missing network fails in seconds.

Only the standard library here: the CLI imports this module before jax or tfds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from realsys_cli.errors import DatasetError, NetworkError
from realsys_cli.progress import SILENT, Progress

log = logging.getLogger("realsys")

MIRROR_ENV = "REALSYS_DATASETS_MIRROR"
NO_DOWNLOAD_ENV = "REALSYS_NO_DOWNLOAD"
ACCEPT_ENV = "REALSYS_DATASETS_ACCEPT"
CONNECT_TIMEOUT_S = 3.0  # DNS + TCP connect, checked before anything else
READ_TIMEOUT_S = 20.0  # a stalled transfer counts as a dropped connection after this
RETRIES = 4  # attempts per file after a dropped connection, each resuming where it stopped
CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One upstream file: where it lives, its size in bytes and its SHA-256."""

    url: str
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return urllib.parse.urlparse(self.url).path.rsplit("/", 1)[-1]


# ------------------------------------------------------------------------------ policy and hooks
class _State:
    forbidden = False
    progress: Progress = SILENT
    sums: dict[str, dict[str, str]] = {}  # mirror base URL -> {file name: sha256}


def forbid() -> None:
    """--no-download: this process never opens a socket to fetch data."""
    _State.forbidden = True


def allowed() -> bool:
    return not _State.forbidden and os.environ.get(NO_DOWNLOAD_ENV, "") in ("", "0")


def set_progress(progress: Progress) -> None:
    """The CLI's byte progress bars (the library default is silent)."""
    _State.progress = progress


# ---------------------------------------------------------------------------------- mirrors
def mirror_base(dataset: str) -> str | None:
    base = os.environ.get(MIRROR_ENV, "").strip()
    if not base:
        return None
    return base.replace("{name}", dataset.split("/")[0]).rstrip("/")


def source_url(remote: RemoteFile, dataset: str) -> str:
    base = mirror_base(dataset)
    return f"{base}/{remote.name}" if base else remote.url


def expected_sha256(remote: RemoteFile, dataset: str) -> str:
    """The mirror's SHA256SUMS entry where it has one, else the built-in sum."""
    base = mirror_base(dataset)
    if base is None:
        return remote.sha256
    if base not in _State.sums:
        _State.sums[base] = _read_sums(base)
        if _State.sums[base]:
            log.info("checksums: %s/SHA256SUMS (%d files) replaces realsys's own", base,
                     len(_State.sums[base]))
    return _State.sums[base].get(remote.name, remote.sha256)


def _read_sums(base: str) -> dict[str, str]:
    url = f"{base}/SHA256SUMS"
    check_reachable(url, what=f"{base}/SHA256SUMS")
    try:
        with urllib.request.urlopen(url, timeout=READ_TIMEOUT_S) as response:
            text = response.read(1 << 20).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {}
        raise NetworkError(f"mirror {base}: SHA256SUMS answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        raise NetworkError(f"mirror {base}: cannot read SHA256SUMS ({_reason(e)})") from None
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


# ------------------------------------------------------------------------------- the network
def _host_port(url: str) -> tuple[str, int]:
    """Where a connection to `url` really goes: its proxy where one is set."""
    parsed = urllib.parse.urlparse(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):
        parsed = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
    default = 443 if parsed.scheme == "https" else 80
    return parsed.hostname or "", parsed.port or default


def check_reachable(url: str, timeout: float = CONNECT_TIMEOUT_S, *, what: str = "") -> None:
    """Raise NetworkError within `timeout` seconds when the host of `url` does not answer.

    The socket's own timeout does not cover the DNS lookup, which can hang far longer offline,
    so the attempt runs in a daemon thread and we stop waiting at `timeout`.
    """
    host, port = _host_port(url)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as e:
            outcome.append(e)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    error = outcome[0] if outcome else TimeoutError(f"no answer in {timeout:g} s")
    if error is not None:
        raise NetworkError(
            f"cannot reach {host}:{port} to download{' ' + what if what else ''} "
            f"({type(error).__name__}). Ways out: "
            f"a mirror ({MIRROR_ENV}=URL), a built-in dataset (digits, shapes, moving-digits), "
            "a local folder (--data-dir), or a TFDS data dir prepared elsewhere (--tfds-data-dir)"
        )


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


# ------------------------------------------------------------------------------ one file
def fetch(remote: RemoteFile, directory: str | os.PathLike, *, dataset: str) -> Path:
    """The verified local copy of `remote` in `directory`, downloading what is missing."""
    directory = Path(directory)
    final = directory / remote.name
    if final.is_file():
        return final
    unverified = directory / f"{remote.name}.unverified"
    if unverified.is_file() and _accepted(_sha256_of(unverified)):
        log.info("%s: using the kept download, its SHA-256 accepted by %s", remote.name,
                 ACCEPT_ENV)
        unverified.replace(final)
        return final
    if not allowed():
        raise _downloads_off(remote, final, dataset)
    url = source_url(remote, dataset)
    check_reachable(url, what=f"{dataset} ({remote.name})")
    expected = expected_sha256(remote, dataset)
    directory.mkdir(parents=True, exist_ok=True)
    part = directory / f"{remote.name}.part"
    digest = _download(url, part, remote)
    if digest != expected and not _accepted(digest):
        part.replace(unverified)
        raise DatasetError(
            f"{remote.name} from {url} has SHA-256 {digest}, expected {expected} (the upstream "
            f"file changed, or the download is corrupt); kept as {unverified}: if you trust it, "
            f"run again with {ACCEPT_ENV}={digest}, else delete it to download again"
        )
    part.replace(final)
    return final


def check_fetchable(remote: RemoteFile, directory: str | os.PathLike, *, dataset: str) -> None:
    """Before anything is made for a preparation: fetch's error for a file that is not here
    while downloads are off. Creates nothing."""
    directory = Path(directory)
    final = directory / remote.name
    if allowed() or final.is_file() or (directory / f"{remote.name}.unverified").is_file():
        return
    raise _downloads_off(remote, final, dataset)


def _downloads_off(remote: RemoteFile, final: Path, dataset: str) -> DatasetError:
    return DatasetError(
        f"{dataset} needs {remote.name} ({_size(remote.size)}) and downloads are off "
        f"(--no-download or {NO_DOWNLOAD_ENV}); allow them, or put the verified file at {final}"
    )


def _accepted(digest: str) -> bool:
    accepted = os.environ.get(ACCEPT_ENV, "")
    return digest in {s.strip().lower() for s in accepted.split(",") if s.strip()}


def _download(url: str, part: Path, remote: RemoteFile) -> str:
    """Fill `part` with the whole file at `url`, resuming after drops; return its SHA-256."""
    have = part.stat().st_size if part.is_file() else 0
    if have:
        log.info("%s: resuming at %s of %s", remote.name, _size(have), _size(remote.size))
    else:
        log.info("downloading %s (%s) from %s", remote.name, _size(remote.size), url)
    start = time.perf_counter()
    with _State.progress.task(f"download {remote.name}", remote.size or None,
                              completed=have, unit="bytes") as bar:
        for attempt in range(RETRIES + 1):
            try:
                _transfer(url, part, bar)
                break
            except (ConnectionError, TimeoutError, http.client.HTTPException,
                    urllib.error.URLError) as e:  # HTTP errors are DatasetErrors by now
                have = part.stat().st_size if part.is_file() else 0
                if attempt == RETRIES:
                    raise NetworkError(
                        f"downloading {remote.name} from {url} failed {RETRIES + 1} times "
                        f"({_reason(e)}); {_size(have)} kept: run again to resume"
                    ) from None
                log.warning("%s: connection lost at %s (%s); resuming", remote.name,
                            _size(have), _reason(e))
                time.sleep(0.25 * 2**attempt)
    size = part.stat().st_size
    log.info("%s: %s in %.1f s; verifying", remote.name, _size(size), time.perf_counter() - start)
    return _sha256_of(part)


def _transfer(url: str, part: Path, bar) -> None:
    """One HTTP request for the bytes `part` lacks, appended to it; raises on a short read."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "realsys"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=READ_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part is already whole
            return
        raise DatasetError(f"{url} answered HTTP {e.code} {e.reason}") from None
    received = 0
    with response, part.open("r+b" if have else "wb") as out:
        if have and response.status != 206:  # the server ignores Range: start over
            log.info("%s does not resume downloads; starting again", url)
            out.truncate(0)
        out.seek(0, os.SEEK_END)
        while chunk := response.read(CHUNK):
            out.write(chunk)
            received += len(chunk)
            bar.advance(len(chunk))
        length = response.headers.get("Content-Length")
    if received == 0 or (length is not None and received != int(length)):
        raise http.client.IncompleteRead(b"", int(length) - received if length else None)


def _hash_into(path: Path, digest):
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest


def _sha256_of(path: Path) -> str:
    return _hash_into(path, hashlib.sha256()).hexdigest()


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"
