"""A throw-away PostgreSQL 15 on loopback (Debian's postgresql-15 binaries), for the deployment
instance's tests and benchmarks: yields the DAGSTER_PG_* settings deploy/dagster.postgres.yaml reads."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gnt_assets_tests.dagster_dev import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def postgres_available() -> bool:
    return (PG_BIN / "initdb").exists() and shutil.which("runuser") is not None


@contextmanager
def running_postgres(max_connections: int = 100) -> Iterator[dict[str, str]]:
    # initdb refuses root; the postgres user must reach the folder (pytest's tmp is root-only)
    root = Path(tempfile.mkdtemp(prefix="gnt-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    shutil.chown(root, "postgres")
    shutil.chown(sockets, "postgres")
    os.chmod(root, 0o755)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, PG_BIN / "initdb", "-D", data, "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
    subprocess.run([*as_postgres, PG_BIN / "pg_ctl", "-D", data, "-o", options, "-w", "-l", root / "log", "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_postgres, PG_BIN / "createdb", "-h", "127.0.0.1", "-p", str(port), "dagster"], check=True, capture_output=True)
        yield {"DAGSTER_PG_USERNAME": "postgres", "DAGSTER_PG_PASSWORD": "unused", "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_DB": "dagster", "DAGSTER_PG_PORT": str(port)}
    finally:
        subprocess.run([*as_postgres, PG_BIN / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
