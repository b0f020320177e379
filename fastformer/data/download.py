"""Fetch an official dataset file once, verify it, and fail offline with one actionable line.

Shared by every task's data code::

    path = ensure_file(root / "imdb/aclImdb_v1.tar.gz", url=IMDB_URL, md5=IMDB_MD5, allow_download=True)

The file is streamed to a hidden ``.<name>.<pid>.<random>.part`` next to ``dest`` (:func:`fastformer.utils.atomic_path`)
with a tqdm progress bar, checked (md5/sha256 when published, else the byte count against ``Content-Length`` and the
gzip/zip magic bytes), then renamed into place, so a half-finished download is never mistaken for data. Any network
or write failure raises :class:`DataUnavailableError` whose message is one line naming the URL and the exact path
where a manually downloaded copy can be placed.

A connection failure is remembered for the rest of the process: no name resolution or a timeout (no network, or a
firewall that drops packets) for every later download, a refused connection for that host. Later downloads then fail
at once with the same reason instead of waiting out their own timeouts, so checking every dataset on a machine
without a network (``make data``, reproduce's data check) takes seconds. ``file://`` URLs are never affected.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from fastformer.errors import UserInputError

log = logging.getLogger(__name__)
_UNREACHABLE: dict[str, str] = {}  # host (or "*": every host) -> why an earlier download could not connect


def network_down(url: str | None = None) -> str | None:
    """Why a download of ``url`` (None: of any host) would not connect, from this process's earlier failures."""
    parts = urllib.parse.urlsplit(url) if url else None
    if parts is not None and parts.scheme not in ("http", "https"):  # a local file:// copy is always tried
        return None
    return _UNREACHABLE.get("*") or (_UNREACHABLE.get(parts.hostname) if parts is not None else None)


def _remember_failure(url: str, err: BaseException) -> None:
    """Record a connection failure (not an HTTP answer, not a local file) for :func:`network_down`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or isinstance(err, urllib.error.HTTPError):
        return
    reason = getattr(err, "reason", err)
    why = f"an earlier download from {parts.hostname} failed with {type(reason).__name__}: {reason}"
    if isinstance(reason, (socket.gaierror, socket.timeout, TimeoutError)):
        _UNREACHABLE["*"] = why
    elif isinstance(err, (urllib.error.URLError, ConnectionError)):
        _UNREACHABLE[parts.hostname or url] = why


_MAGIC = {".gz": b"\x1f\x8b", ".zip": b"PK\x03\x04"}


class DataUnavailableError(FileNotFoundError, UserInputError):
    """A dataset file is missing locally and could not be downloaded (one line: where to get it, where to put it)."""


def manual_hint(url: str | None, dest: Path) -> str:
    """One-line instruction naming where to get the file and where to put it."""
    src = f"download {url}" if url else "obtain the file"
    return f"{src} and place it at {Path(dest).resolve()}"


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, *, md5: str | None = None, sha256: str | None = None, size: int | None = None) -> None:
    """Raise ``ValueError`` (one line) when ``path`` does not match the given checksum / size / archive magic."""
    path = Path(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ValueError(f"{path}: size {actual_size} bytes != expected {size}; delete it and download again")
    for algo, want in (("md5", md5), ("sha256", sha256)):
        if want and _digest(path, algo) != want.lower():
            raise ValueError(f"{path}: {algo} mismatch (expected {want}); delete it and download again")
    magic = next((m for suffix, m in _MAGIC.items() if path.name.endswith(suffix)), None)
    if magic is not None:
        with open(path, "rb") as f:
            if f.read(len(magic)) != magic:
                raise ValueError(f"{path}: not a valid {path.suffix} archive (bad magic bytes); delete it and retry")


def download(url: str, dest: Path, *, md5: str | None = None, sha256: str | None = None, size: int | None = None,
             timeout: float = 30.0) -> Path:
    """Stream ``url`` to ``dest`` with a progress bar, verify it, and return ``dest``."""
    from fastformer.utils import atomic_path, progress  # (imports torch: only when a download actually happens)

    dest = Path(dest)
    down = network_down(url)
    if down:
        raise DataUnavailableError(f"could not download {url} (not tried: {down}); {manual_hint(url, dest)}")
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # removed again on failure
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "fastformer-repro"})
        # the .part file is deleted on any failure and renamed onto dest only once verified
        with atomic_path(dest, suffix=".part") as part:
            with urllib.request.urlopen(req, timeout=timeout) as resp, open(part, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with progress(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name) as bar:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            verify_file(part, md5=md5, sha256=sha256, size=size if size is not None else total)
    except (OSError, ValueError) as err:  # URLError/HTTPError/timeouts are OSErrors
        for d in created:  # innermost first: leave no empty folder that a later search would take for data
            try:
                d.rmdir()
            except OSError:
                break
        reason = f"{type(err).__name__}: {err}".replace("\n", " ")
        _remember_failure(url, err)
        raise DataUnavailableError(f"could not download {url} ({reason}); {manual_hint(url, dest)}") from err
    log.info("downloaded %s -> %s (%d bytes)", url, dest, dest.stat().st_size)
    return dest


def ensure_file(dest: Path, *, url: str | None, allow_download: bool = True, md5: str | None = None,
                sha256: str | None = None, size: int | None = None) -> Path:
    """Return ``dest`` if it exists, else download it from ``url`` (when allowed) or raise one actionable line."""
    dest = Path(dest)
    if dest.exists():
        return dest
    if url is None or not allow_download:
        extra = " (or set data.download=true)" if url and not allow_download else ""
        raise DataUnavailableError(f"{dest} not found; {manual_hint(url, dest)}{extra}")
    log.info("%s not found; downloading %s", dest, url)
    return download(url, dest, md5=md5, sha256=sha256, size=size)


def writable_dir(path: Path) -> bool:
    """True when files can be created under ``path`` (created if missing)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        probe = Path(path) / f".write_probe_{os.getpid()}"
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


def read_only_by_mode(path: Path) -> bool:
    """True when ``path`` exists and has no write bit at all (``dr-xr-xr-x``), honoured even when running as root."""
    try:
        return not (Path(path).stat().st_mode & 0o222)
    except OSError:
        return False


def default_cache_dir(data_root: Path) -> Path:
    """``<data_root>/.cache`` when writable (caches live next to the data), else a per-root user cache dir.

    A root without any write bit (like ``../shared/data``) counts as read-only even for root, which could write.
    """
    local = Path(data_root) / ".cache"
    if not read_only_by_mode(data_root) and writable_dir(local):
        return local
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastformer" / "data"
    tag = hashlib.sha1(str(Path(data_root).resolve()).encode()).hexdigest()[:10]
    out = base / f"{Path(data_root).resolve().name}-{tag}"
    log.info("data root %s is read-only; caching under %s", data_root, out)
    return out

