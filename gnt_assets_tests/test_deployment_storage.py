"""The deployment instance's pooled PostgreSQL storages (gnt_assets/deployment_storage.py) on a real PostgreSQL 15."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as db

from gnt_assets.deployment_storage import PooledPostgresEventLogStorage, PooledPostgresRunStorage, PooledPostgresScheduleStorage
from gnt_assets_tests.postgres_server import postgres_available, running_postgres

pytestmark = pytest.mark.servers

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    if not postgres_available():
        pytest.fail("PostgreSQL 15 server binaries (Debian postgresql-15) are needed for the deployment tests")
    home = tmp_path_factory.mktemp("home")
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    with running_postgres() as settings:
        saved = {k: os.environ.get(k) for k in settings}
        os.environ.update(settings)
        try:
            with dg.DagsterInstance.from_config(str(home)) as deployed:
                yield deployed
        finally:
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


def sessions_opened(storage) -> int:
    """Connections the server has accepted for the database so far (PostgreSQL 14+)."""
    with storage._connect() as conn:
        return conn.execute(db.text("select sessions from pg_stat_database where datname = current_database()")).scalar()


def test_the_deploy_config_uses_pooled_storages_that_reuse_connections(instance):
    assert isinstance(instance.run_storage, PooledPostgresRunStorage)
    assert isinstance(instance.event_log_storage, PooledPostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PooledPostgresScheduleStorage)

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b"]))
    def pooled_tiles():
        return 1

    before = sessions_opened(instance.event_log_storage)
    result = dg.materialize([pooled_tiles], instance=instance, partition_key="b")
    assert result.success
    events = len(instance.all_logs(result.run_id))
    opened = sessions_opened(instance.event_log_storage) - before
    assert events >= 10 and opened <= 6, f"{opened} connections for {events} events"  # stock storages: one or more per event
    assert instance.get_materialized_partitions(pooled_tiles.key) == {"b"}
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
