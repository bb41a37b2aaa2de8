"""Fetch a file over HTTP(S), verify its SHA-256, and publish it atomically.

The bytes stream into a hidden temporary file in the target folder; only when the
checksum matches is it renamed (``os.replace``) to its final name, so a failed or
tampered download never leaves a partial file behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

# Bytes per read: big enough for throughput, small enough to hash as we go.
CHUNK = 1 << 20
# Seconds without progress before a download is abandoned.
TIMEOUT_S = 60.0


class DownloadError(OSError):
    """The file could not be fetched (offline, HTTP error, server gone)."""


class ChecksumError(ValueError):
    """A file's SHA-256 is not the published one."""


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: str | Path, sha256: str) -> Path:
    """Download `url` to `dest` if its SHA-256 is `sha256`; otherwise leave nothing behind."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _stream(url, out)
        if got != sha256.lower():
            raise ChecksumError(
                f"checksum mismatch for {url}: sha256 {got}, expected {sha256}; "
                f"the file was not saved (corrupt download or a changed mirror)")
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def _stream(url: str, out) -> str:
    """Copy the body of `url` into `out`; return its hex SHA-256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"could not download {url}: {reason}; without network, put the files in a "
            f"folder and pass it as data_dir (--data-dir)") from err
    return digest.hexdigest()
