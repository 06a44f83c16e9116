"""HTTP(S) downloads with ``wget --continue`` semantics.

Bytes go to ``{name}.part``; a retry asks for ``Range: bytes={have}-`` and
appends on 206 (restarts on 200). Only when the length matches the server's
total (and the published ``Content-MD5``, when there is one, kept across
resumes in ``{name}.part.md5``) is the part renamed to its final name, so a
half-download is never taken for a file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from gnt_assets.core.errors import TransientError

CHUNK = 1 << 20
_TOTAL = re.compile(r"bytes \d+-\d+/(\d+)")


class DownloadError(TransientError):
    """A download that failed for good (or kept failing after every retry)."""


class _Retryable(TransientError):
    pass


@dataclass(frozen=True)
class Download:
    path: Path
    size: int
    md5: str
    attempts: int
    resumed_from: int


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _attempt(session: requests.Session, url: str, part: Path, timeout: float) -> tuple[int, str | None]:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as error:
        raise _Retryable(f"{type(error).__name__}: {error}") from error
    with response:
        if response.status_code == 416 and have:
            return have, None  # the part already holds everything; the size check decides
        if response.status_code in (429, 500, 502, 503, 504):
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code not in (200, 206):
            raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason}")
        if response.status_code == 206:
            match = _TOTAL.match(response.headers.get("Content-Range", ""))
            total = int(match.group(1)) if match else None
            mode = "ab"
        else:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            mode, have = "wb", 0
        published = _published_md5(response, part)
        try:
            with open(part, mode) as handle:
                for chunk in response.iter_content(16 * 1024):  # small, so a reset keeps what arrived
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except requests.RequestException as error:
            raise _Retryable(f"connection lost after {part.stat().st_size} bytes: {error}") from error
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Retryable(f"got {size} of {total} bytes")
    return size, published


def _published_md5(response: requests.Response, part: Path) -> str | None:
    """The whole file's Content-MD5 (hex): from a 200 it is kept beside the ``.part``, so a
    resumed download (a 206 carries only its range's) is still verified against it."""
    sidecar = part.with_name(part.name + ".md5")
    if response.status_code == 206:
        return sidecar.read_text() if sidecar.exists() else None
    header = response.headers.get("Content-MD5")
    if header is None:
        sidecar.unlink(missing_ok=True)
        return None
    published = base64.b64decode(header).hex()
    sidecar.write_text(published)
    return published


def download(url: str, dest: Path, *, retries: int = 5, backoff_s: float = 0.5, timeout_s: float = 60.0) -> Download:
    """Fetch ``url`` to ``dest`` (resuming a ``.part`` left by an earlier try) and verify it."""
    if dest.exists():
        return Download(dest, dest.stat().st_size, _file_md5(dest), 0, dest.stat().st_size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed_from = part.stat().st_size if part.exists() else 0
    problems = []
    with requests.Session() as session:
        for attempt in range(1, retries + 2):
            try:
                size, published_md5 = _attempt(session, url, part, timeout_s)
            except _Retryable as error:
                problems.append(str(error))
                if attempt <= retries:
                    time.sleep(backoff_s * 2 ** (attempt - 1))
                continue
            md5 = _file_md5(part)
            sidecar = part.with_name(part.name + ".md5")
            if published_md5 and md5 != published_md5:
                part.unlink()
                sidecar.unlink(missing_ok=True)
                raise DownloadError(f"{url}: MD5 {md5} differs from the published {published_md5}; the partial copy was removed")
            os.replace(part, dest)
            sidecar.unlink(missing_ok=True)
            return Download(dest, size, md5, attempt, resumed_from)
    raise DownloadError(f"{url}: failed after {retries + 1} attempts ({'; '.join(problems)}); {part.name} kept for resume")
