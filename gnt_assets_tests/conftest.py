"""Fixtures every test package shares: a private storage root and a Dagster instance."""

from __future__ import annotations

import gc
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from dagster._core.storage.defs_state.base import set_defs_state_storage
from upath import UPath


@pytest.fixture(autouse=True)
def no_leaked_defs_state_storage():
    """Each test starts without a state storage left behind by an instance an earlier test dropped:
    loading definitions would otherwise ask that dead instance (order-dependent failures under xdist).

    Dagster keeps the storage in a context variable that an entered instance resets on exit. An
    instance context some earlier code entered and abandoned (a run result, a generator) exits
    only when the garbage collector gets to it, and its reset then restores a storage whose
    instance is gone, in the middle of whichever test is running. Collecting before and after
    each test makes those resets happen here, where they are overridden."""
    gc.collect()
    with set_defs_state_storage(None):
        yield
        gc.collect()


os.environ.setdefault("GNT_PROFILE", "local")


@pytest.fixture
def storage_root(tmp_path, monkeypatch) -> UPath:
    """A fresh storage root; GNT_STORAGE_ROOT points at it so resources built now use it."""
    root = tmp_path / "storage"
    root.mkdir()
    monkeypatch.setenv("GNT_STORAGE_ROOT", str(root))
    return UPath(root)


@pytest.fixture
def instance(tmp_path):
    """A test instance with one consolidated event log, like the project's (dagster.yaml)."""
    event_log = {
        "module": "dagster.core.storage.event_log",
        "class": "ConsolidatedSqliteEventLogStorage",
        "config": {"base_dir": str(tmp_path / "event_log")},
    }
    with dg.instance_for_test(overrides={"event_log_storage": event_log}) as test_instance:
        yield test_instance


@pytest.fixture(scope="session")
def s3_endpoint():
    """A loopback S3-protocol server (moto) with one bucket, shared by a test session."""
    from gnt_assets_tests.s3_server import s3_server

    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_root(s3_endpoint, request):
    """A fresh ``UPath`` prefix in the loopback bucket, unique per test."""
    import uuid

    return UPath(f"{s3_endpoint.root}/{request.node.name[:40]}-{uuid.uuid4().hex[:8]}", **s3_endpoint.storage_options())


@pytest.fixture
def webhook():
    """A webhook on loopback: its URL and the JSON bodies POSTed to it, in order."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
