"""The deployment instance's pooled PostgreSQL storages (gnt_assets/deployment_storage.py) on a real PostgreSQL 15."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as db
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable

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


def test_a_ranged_run_plans_its_days_in_one_insert_and_a_day_it_fails_still_shows_failed(instance, storage_root, monkeypatch):
    """DAGSTER_EVENT_BATCH_SIZE (deploy/docker-compose.yml, every Dagster service) hands a run's planned days to
    the event log as one batch, which the pooled storage inserts at once. Each day keeps its own planned event, so
    a day the ranged run failed is failed in the partition status (what the UI shows) and in the failure report.
    Each planned check keeps its row per day, written with the event serialized once."""
    from gnt_assets.conus404.definitions import defs
    from gnt_assets.conus404.run_history import failed_days
    from gnt_assets.partitions import conus404_day
    from gnt_assets_tests.conus404_tests.conus404_fixtures import local_resources
    from gnt_assets_tests.deployment import compose

    environments = [compose()["services"][name]["environment"] for name in ("code-server", "webserver", "daemon")]
    batch_size = {environment["DAGSTER_EVENT_BATCH_SIZE"] for environment in environments}
    assert len(batch_size) == 1 and int(next(iter(batch_size))) > 366  # a year-long run's days fit one batch
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", next(iter(batch_size)))
    planned_per_insert: list[int] = []

    def count_planned(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO event_logs"):
            values = parameters.values() if isinstance(parameters, dict) else []
            planned_per_insert.append(sum(value == "ASSET_MATERIALIZATION_PLANNED" for value in values))

    db.event.listen(instance.event_log_storage._engine, "before_cursor_execute", count_planned)
    try:  # 07-05 lies past the local source's four days: the run writes 07-03 and 07-04, then fails
        result = dg.materialize(assets=[*defs.assets, *defs.asset_checks], selection=["conus404_daily"], instance=instance,
                                resources=local_resources(storage_root), raise_on_error=False,
                                tags={"dagster/asset_partition_range_start": "2020-07-03", "dagster/asset_partition_range_end": "2020-07-05"})
    finally:
        db.event.remove(instance.event_log_storage._engine, "before_cursor_execute", count_planned)
    assert not result.success
    assert [n for n in planned_per_insert if n] == [3]
    key = dg.AssetKey("conus404_daily")
    planned = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
    assert sorted(r.event_log_entry.dagster_event.partition for r in planned) == ["2020-07-03", "2020-07-04", "2020-07-05"]
    status = instance.get_status_by_partition(key, ["2020-07-02", "2020-07-03", "2020-07-04", "2020-07-05"], conus404_day)
    assert status == {"2020-07-02": None, "2020-07-03": dg.AssetPartitionStatus.MATERIALIZED,
                      "2020-07-04": dg.AssetPartitionStatus.MATERIALIZED, "2020-07-05": dg.AssetPartitionStatus.FAILED}
    assert [f.day for f in failed_days(instance, key)] == ["2020-07-05"]
    # every planned check has its row per day, which the evaluations then complete (none for the unwritten day)
    with instance.event_log_storage.index_connection() as conn:
        executions = conn.execute(db.select(AssetCheckExecutionsTable.c.check_name, AssetCheckExecutionsTable.c.partition,
                                            AssetCheckExecutionsTable.c.execution_status)
                                  .where(AssetCheckExecutionsTable.c.run_id == result.run_id)).fetchall()
    planned_checks = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED).records
    checks = {r.event_log_entry.dagster_event.event_specific_data.check_name for r in planned_checks}
    assert len(checks) == len(planned_checks) >= 8  # one planned event per check, for all of the run's days
    assert {(name, day) for name, day, _ in executions} == {(name, day) for name in checks for day in ("2020-07-03", "2020-07-04", "2020-07-05")}
    assert {(day, status) for _, day, status in executions} == {("2020-07-03", "SUCCEEDED"), ("2020-07-04", "SUCCEEDED"), ("2020-07-05", "PLANNED")}
