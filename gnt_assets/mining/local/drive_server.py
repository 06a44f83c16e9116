"""A Drive v3 REST server and OAuth token endpoint on loopback, so ``GoogleDrive`` runs offline.

It serves a folder of the local Drive (``{root}/local/drive/{folder}``) as Drive
does: ``files.list`` by query and page, with only the ``fields`` asked for and
``md5Checksum`` of the stored bytes; media downloads by byte range; deletes. Its
strictness is the real service's where the pipeline depends on it:

- every API call needs a current ``Authorization: Bearer`` token, else 401;
  tokens come from ``/token`` for the one refresh token it knows, and
  ``expire_tokens`` makes every token issued so far stale (an hour passing);
- with ``shared_drive_id`` set, the files live in that shared drive: a listing
  without ``supportsAllDrives``/``includeItemsFromAllDrives`` leaves them out,
  and a get or delete without ``supportsAllDrives`` answers 404;
- names in ``corrupt`` are served with their last byte flipped (damage on the way
  that a GeoTIFF reader does not notice) while ``md5Checksum`` stays the stored file's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from gnt_assets.core.loopback import serving
from gnt_assets.mining.local.drive import file_id

FOLDER_MIME = "application/vnd.google-apps.folder"


@dataclass
class DriveServer:
    """State of one server; tests read ``requests`` and ``tokens_issued`` and set ``corrupt``."""

    root: Path  # the local Drive: one sub-folder per Drive folder
    client_id: str = "gnt-local.apps.googleusercontent.com"
    client_secret: str = "gnt-local-secret"
    refresh_token: str = "1//gnt-local-refresh"
    shared_drive_id: str | None = None
    corrupt: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path?query, Authorization)
    tokens_issued: list[str] = field(default_factory=list)
    _valid: set[str] = field(default_factory=set)
    url: str = ""

    @property
    def api_endpoint(self) -> str:
        return f"{self.url}/drive/v3/"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def expire_tokens(self) -> None:
        self._valid.clear()

    def issue_token(self) -> str:
        token = f"ya29.local-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        self._valid.add(token)
        return token

    def entries(self) -> list[dict]:
        """Every folder and file, as Drive's file resources."""
        out = []
        drive = {"driveId": self.shared_drive_id} if self.shared_drive_id else {}
        for folder in sorted(p for p in self.root.glob("*") if p.is_dir()):
            folder_id = "F" + file_id(folder.name)[:27]
            out.append({"id": folder_id, "name": folder.name, "mimeType": FOLDER_MIME, "parents": ["root"], "path": folder, **drive})
            for path in sorted(p for p in folder.glob("*") if p.is_file()):
                out.append({"id": file_id(path.name), "name": path.name, "mimeType": "image/tiff", "parents": [folder_id],
                            "size": str(path.stat().st_size), "md5Checksum": hashlib.md5(path.read_bytes()).hexdigest(),
                            "path": path, **drive})
        return out


def _matches(entry: dict, query: str) -> bool:
    """The subset of Drive's query language the pipeline writes: and-ed terms, one or-group of parents."""
    for term in re.findall(r"name = '([^']*)'", query):
        if entry["name"] != term:
            return False
    for term in re.findall(r"name contains '([^']*)'", query):
        if term.lower() not in entry["name"].lower():
            return False
    for term in re.findall(r"mimeType = '([^']*)'", query):
        if entry["mimeType"] != term:
            return False
    parents = re.findall(r"'([^']*)' in parents", query)
    return not parents or bool(set(parents) & set(entry["parents"]))


def _select(entry: dict, fields: str) -> dict:
    """Only the fields asked for, as Drive answers (``files(id, name)`` or ``id, name``)."""
    inner = re.search(r"files\(([^)]*)\)", fields)
    names = [f.strip() for f in (inner.group(1) if inner else fields).split(",") if f.strip()]
    return {k: entry[k] for k in (names or ["id", "name", "mimeType"]) if k in entry}


def _handler(state: DriveServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: dict | bytes, headers: dict | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, reason: str) -> None:
            self._reply(status, {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}})

        def _authorized(self) -> bool:
            auth = self.headers.get("Authorization", "")
            state.requests.append((self.command, self.path, auth))
            if auth.removeprefix("Bearer ") in state._valid:
                return True
            self._error(401, "Request had invalid authentication credentials.", "authError")
            return False

        def _params(self) -> tuple[str, dict[str, str]]:
            parts = urlsplit(self.path)
            return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}

        def _visible(self, entry: dict, params: dict, listing: bool) -> bool:
            if "driveId" not in entry:
                return True
            supports = params.get("supportsAllDrives") == "true"
            return supports and (not listing or params.get("includeItemsFromAllDrives") == "true")

        def _file(self, fid: str, params: dict) -> dict | None:
            entry = next((e for e in state.entries() if e["id"] == fid), None)
            if entry is None or not self._visible(entry, params, listing=False):
                self._error(404, f"File not found: {fid}.", "notFound")
                return None
            return entry

        def do_POST(self):
            if urlsplit(self.path).path != "/token":
                return self._error(404, "no such endpoint", "notFound")
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()).items()}
            state.requests.append(("POST", self.path, ""))
            known = (form.get("grant_type"), form.get("refresh_token"), form.get("client_id"), form.get("client_secret"))
            if known != ("refresh_token", state.refresh_token, state.client_id, state.client_secret):
                return self._reply(400, {"error": "invalid_grant", "error_description": "Bad Request"})
            self._reply(200, {"access_token": state.issue_token(), "expires_in": 3599, "token_type": "Bearer"})

        def do_GET(self):
            if not self._authorized():
                return
            path, params = self._params()
            if path == "/drive/v3/files":
                return self._list(params)
            fid = path.removeprefix("/drive/v3/files/")
            if (entry := self._file(fid, params)) is None:
                return
            if params.get("alt") != "media":
                return self._reply(200, _select(entry, params.get("fields", "")))
            data = entry["path"].read_bytes()
            if entry["name"] in state.corrupt and data:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            start, stop = 0, len(data) - 1
            if match := re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):
                start, stop = int(match.group(1)), min(int(match.group(2) or stop), stop)
            self._reply(206, data[start : stop + 1], {"Content-Range": f"bytes {start}-{stop}/{len(data)}"})

        def _list(self, params: dict) -> None:
            if params.get("includeItemsFromAllDrives") == "true" and params.get("supportsAllDrives") != "true":
                return self._error(403, "The includeItemsFromAllDrives parameter can only be set to true when supportsAllDrives "
                                        "is set to true.", "teamDrivesParameterRequired")
            if params.get("corpora") == "drive" and not params.get("driveId"):
                return self._error(400, "The driveId parameter must be specified if and only if corpora is set to drive.",
                                   "invalidParameter")
            query = params.get("q", "")
            found = [e for e in state.entries() if self._visible(e, params, listing=True) and _matches(e, query)]
            if params.get("corpora") == "drive":
                found = [e for e in found if e.get("driveId") == params["driveId"]]
            start, size = int(params.get("pageToken", 0)), int(params.get("pageSize", 100))
            body: dict = {"files": [_select(e, params.get("fields", "")) for e in found[start : start + size]]}
            if start + size < len(found):
                body["nextPageToken"] = str(start + size)
            self._reply(200, body)

        def do_DELETE(self):
            if not self._authorized():
                return
            path, params = self._params()
            if (entry := self._file(path.removeprefix("/drive/v3/files/"), params)) is None:
                return
            entry["path"].unlink()
            self.send_response(204)
            self.end_headers()

    return Handler


@contextlib.contextmanager
def drive_server(root: Path, **settings) -> Iterator[DriveServer]:
    """Serve the local Drive ``root`` on 127.0.0.1 (free port) until exit; ``settings`` are ``DriveServer`` fields."""
    state = DriveServer(root=Path(root), **settings)
    with serving(_handler(state), "drive-server") as url:
        state.url = url
        yield state
