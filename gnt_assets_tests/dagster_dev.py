"""`dagster dev` on a free loopback port, as `make dev` runs it, for tests that drive the UI's GraphQL API."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSET_NODES = "{ assetNodes { assetKey { path } } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_dagster_dev(folder: Path, *, location: tuple[str, ...] = ("-w", str(REPO / "workspace.yaml")),
                        instance_config: Path = REPO / "dagster.yaml", **env: str) -> Iterator[str]:
    """A fresh instance (``instance_config``, default the repo's dagster.yaml) and storage root under
    ``folder``; yields the URL once the code location serves its assets. ``location`` picks the code
    (default: the repo's workspace); ``env`` adds settings such as ``GNT_RASTER_TILE_SIZE``."""
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(instance_config, home / "dagster.yaml")
    port = free_port()
    settings = {"DAGSTER_HOME": str(home), "GNT_STORAGE_ROOT": str(folder / "data"), "GNT_PROFILE": "local", **env}
    log = folder / "dev.log"
    process = subprocess.Popen(
        [BIN / "dagster", "dev", *location, "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env={**os.environ, **settings}, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                body = requests.post(f"{url}/graphql", json={"query": ASSET_NODES}, timeout=5).json()
                if body.get("data", {}).get("assetNodes"):
                    break
            except (requests.ConnectionError, requests.Timeout, ValueError):
                pass
            if process.poll() is not None:
                pytest.fail(f"dagster dev exited: {log.read_text()[-3000:]}")
            time.sleep(1)
        else:
            pytest.fail(f"dagster dev did not serve the code location: {log.read_text()[-3000:]}")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
