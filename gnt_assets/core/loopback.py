"""Loopback HTTP servers of the local stand-ins (Earth Engine, Drive, Planetary Computer's token service, the
Sentinel-2 and Mapterhorn file servers): a threaded server on 127.0.0.1 for as long as a block runs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileHandler(BaseHTTPRequestHandler):
    """A file server's handler: GET and HEAD both answered by ``_serve``, no request log on stderr (tests read
    what the stand-in recorded instead)."""

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        raise NotImplementedError


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) until exit; yields the server's URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
