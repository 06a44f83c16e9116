"""HTTP(S) downloads with ``wget --continue`` semantics that a server cannot fool.

Bytes go to ``{name}.part`` exactly as sent (``Accept-Encoding: identity`` is
requested and nothing is decoded on the fly, so every length is a byte count
of the file); what the first response said about the file (ETag,
Last-Modified, size, published MD5) is kept beside it in ``{name}.part.json``.
A retry asks for ``Range: bytes={have}-`` with ``If-Range`` (the ETag, else
Last-Modified) and appends only when the 206's ``Content-Range`` starts at the
bytes held and names the same file; a 200 (the server ignored the range or the
file changed), a wrong start, a changed ETag or total restart from byte 0. A
416 is believed only when a HEAD confirms the size. When the length matches,
the server's MD5 (``Content-MD5``, or an ETag that is a plain MD5 as S3 and GCS
send) matches, and the file opens (``validate``), the part is renamed to its
final name, so a half or mixed download is never taken for the file.

A server that encodes the body anyway (``Content-Encoding: gzip``) has the
encoded bytes checked against its length, then decoded; such a download is
never resumed (its ranges would be of the encoded bytes).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

from gnt_assets.core.errors import TRANSIENT_STATUS, InputError, TransientError

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_MD5_ETAG = re.compile(r'"?([0-9a-fA-F]{32})"?')


class DownloadError(TransientError):
    """A download that kept failing after every retry (a later run may succeed)."""


class DownloadRefused(InputError):
    """A download that cannot succeed on retry: the server refuses the URL (404, 403...), or the
    complete, verified bytes are not a file that opens."""


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


def _state_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_state(part: Path) -> dict:
    path = _state_path(part)
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def _restart(part: Path) -> None:
    part.unlink(missing_ok=True)
    _state_path(part).unlink(missing_ok=True)


def _published_md5(headers) -> str | None:
    """The whole file's MD5 (hex) as the server states it: Content-MD5, else an ETag that is a bare MD5."""
    if header := headers.get("Content-MD5"):
        try:
            return base64.b64decode(header).hex()
        except ValueError:
            return None
    etag = headers.get("ETag", "")
    match = _MD5_ETAG.fullmatch(etag)
    return match.group(1).lower() if match and not etag.startswith("W/") else None


def _file_state(response: requests.Response) -> dict:
    headers = response.headers
    encoding = headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    length = headers.get("Content-Length")
    return {
        "etag": headers.get("ETag"),
        "last_modified": headers.get("Last-Modified"),
        "encoding": encoding,
        "total": int(length) if length is not None and length.isdigit() else None,
        "md5": _published_md5(headers) if encoding == "identity" else None,
    }


def _changed(state: dict, headers) -> str | None:
    """Why the server's copy is no longer the one the part was started from (None: the same)."""
    etag, modified = headers.get("ETag"), headers.get("Last-Modified")
    if state.get("etag") and etag and etag != state["etag"]:
        return f"ETag {state['etag']} -> {etag}"
    if not state.get("etag") and state.get("last_modified") and modified and modified != state["last_modified"]:
        return f"Last-Modified {state['last_modified']} -> {modified}"
    return None


def _confirm_416(session: requests.Session, url: str, part: Path, state: dict, timeout: float) -> dict:
    """A 416 on ``bytes={have}-`` means "nothing after that" only if the file is ``have`` bytes long."""
    have = part.stat().st_size
    try:
        head = session.head(url, headers={"Accept-Encoding": "identity"}, timeout=timeout, allow_redirects=True)
    except requests.RequestException as error:
        raise _Retryable(f"416, and the HEAD to confirm the size failed: {type(error).__name__}: {error}") from error
    length = head.headers.get("Content-Length")
    changed = _changed(state, head.headers)
    if head.status_code == 200 and length is not None and int(length) == have and not changed:
        return {**state, "total": have}
    _restart(part)
    raise _Retryable(f"416 for bytes={have}-, but HEAD says {head.status_code} with {length} bytes{f' ({changed})' if changed else ''}; restarting from 0")


def _write_body(response: requests.Response, part: Path, mode: str) -> None:
    try:
        with open(part, mode) as handle:
            while chunk := response.raw.read(16 * 1024, decode_content=False):  # small, so a reset keeps what arrived
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        raise _Retryable(f"connection lost after {part.stat().st_size} bytes: {type(error).__name__}: {error}") from error


def _attempt(session: requests.Session, url: str, part: Path, timeout: float) -> dict:
    """One request; returns the file's state once ``part`` holds as many bytes as the server's total."""
    state = _read_state(part) if part.exists() else {}
    if part.exists() and state.get("encoding", "identity") != "identity":
        _restart(part)  # encoded bytes are never resumed
        state = {}
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if validator := state.get("etag") or state.get("last_modified"):
            headers["If-Range"] = validator
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as error:
        raise _Retryable(f"{type(error).__name__}: {error}") from error
    with response:
        status = response.status_code
        if status == 416 and have:
            return _confirm_416(session, url, part, state, timeout)
        if status in TRANSIENT_STATUS:
            raise _Retryable(f"HTTP {status}")
        if status not in (200, 206) or (status == 206 and not have):
            raise DownloadRefused(f"{url}: HTTP {status} {response.reason}")
        if status == 206:
            content_range = response.headers.get("Content-Range", "")
            match = _CONTENT_RANGE.fullmatch(content_range.strip())
            changed = _changed(state, response.headers)
            total = int(match.group(3)) if match and match.group(3) != "*" else None
            if match is None or int(match.group(1)) != have:
                _restart(part)
                raise _Retryable(f"Content-Range {content_range!r} does not start at the {have} bytes held; restarting from 0")
            if changed or (state.get("total") and total and total != state["total"]):
                _restart(part)
                why = changed or f"size {state['total']} -> {total}"
                raise _Retryable(f"the file changed on the server ({why}); restarting from 0")
            state = {**state, "total": total or state.get("total")}
            mode = "ab"
        else:  # 200: a fresh start, whether asked for, a changed file (If-Range) or a server ignoring Range
            state, mode = _file_state(response), "wb"
            _state_path(part).write_text(json.dumps(state))
        _write_body(response, part, mode)
    size = part.stat().st_size
    total = state.get("total")
    if total is not None and size > total:
        _restart(part)
        raise _Retryable(f"got {size} bytes, more than the {total} announced; restarting from 0")
    if total is not None and size != total:
        raise _Retryable(f"got {size} of {total} bytes")
    return state


def _decode(part: Path, encoding: str, target: Path) -> None:
    """Decode a body the server sent gzip/deflate-encoded into ``target``."""
    try:
        if encoding in ("gzip", "x-gzip"):
            with gzip.open(part, "rb") as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
        elif encoding == "deflate":
            target.write_bytes(zlib.decompress(part.read_bytes()))
        else:
            raise DownloadRefused(f"{part.name}: the server sent Content-Encoding {encoding!r}, which cannot be decoded")
    except (OSError, EOFError, zlib.error) as error:
        target.unlink(missing_ok=True)
        raise _Retryable(f"the {encoding}-encoded body does not decode: {error}") from error


def download(url: str, dest: Path, *, retries: int = 5, backoff_s: float = 0.5, timeout_s: float = 60.0,
             validate: Callable[[Path], None] | None = None) -> Download:
    """Fetch ``url`` to ``dest`` (resuming a ``.part`` left by an earlier try), verify it, and
    ``validate`` it (raise ``InputError`` if it does not open) before it takes its final name."""
    if dest.exists():
        return Download(dest, dest.stat().st_size, _file_md5(dest), 0, dest.stat().st_size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed_from = part.stat().st_size if part.exists() else 0
    problems = []
    with requests.Session() as session:
        for attempt in range(1, retries + 2):
            try:
                state = _attempt(session, url, part, timeout_s)
                md5 = _file_md5(part)
                if state.get("md5") and md5 != state["md5"]:
                    _restart(part)
                    raise DownloadError(f"{url}: MD5 {md5} differs from the published {state['md5']}; the partial copy was removed")
                checking = dest.with_name(".verify-" + dest.name)
                if state.get("encoding", "identity") != "identity":
                    _decode(part, state["encoding"], checking)
                    md5 = _file_md5(checking)
                else:
                    os.replace(part, checking)
                _state_path(part).unlink(missing_ok=True)
                part.unlink(missing_ok=True)
            except _Retryable as error:
                problems.append(str(error))
                if attempt <= retries:
                    time.sleep(backoff_s * 2 ** (attempt - 1))
                continue
            if validate is not None:
                try:
                    validate(checking)
                except InputError as error:
                    checking.unlink()
                    raise DownloadRefused(f"{url}: the complete, verified download does not open: {error}") from error
            os.replace(checking, dest)
            return Download(dest, dest.stat().st_size, md5, attempt, resumed_from)
    with contextlib.suppress(OSError):
        kept = part.stat().st_size
        problems.append(f"{part.name} ({kept} bytes) kept for resume")
    raise DownloadError(f"{url}: failed after {retries + 1} attempts ({'; '.join(problems)})")
