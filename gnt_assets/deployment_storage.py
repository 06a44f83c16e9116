"""PostgreSQL storages for the deployment instance that keep a small pool of connections.

Dagster's stock PostgreSQL storages open a new connection for every call (SQLAlchemy ``NullPool``), so
every event is a connect, an insert and a notify. The daemon writes one planned-materialization event
per partition of each run it creates: a ranged CONUS404 run of 366 days took about 30 s to create
(81 ms per event), against about 8 s pooled (23 ms per event), measured on the 2-core machine at load
14 (``benchmarks/conus404_record.py`` counts the whole record). Each process keeps up to ``POOL_SIZE``
idle connections per storage and opens up to ``POOL_OVERFLOW`` more while busy; a connection is replaced
after ``POOL_RECYCLE_SECONDS`` (no ping before each use: that is one more round trip per event).
``deploy/dagster.postgres.yaml`` names these classes.

The event log also writes a run's planned materializations as one insert. Dagster hands them over as one
batch when ``DAGSTER_EVENT_BATCH_SIZE`` is set (``deploy/docker-compose.yml`` sets it for every service), but
dagster-postgres stores a batch of planned events one by one; ranged runs' materializations it already
inserts at once. The rows are the same as one by one (one per partition, which is what the UI's failed and
in-progress partition status reads), only the asset's row is updated once per batch, with its latest event.
A planned check's rows (one per partition too) are written with the event serialized once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._serdes import serialize_value
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

POOL_SIZE = 2
POOL_OVERFLOW = 4
POOL_RECYCLE_SECONDS = 300


class _Pooled:
    """Swaps the storage's per-call engine for a pooled one, and builds the subclass from config."""

    def _use_pool(self) -> None:
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT", pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW, pool_recycle=POOL_RECYCLE_SECONDS,
        )

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]):
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._use_pool()

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        """A run's planned materializations (one per partition: 366 for a year-long CONUS404 run) in one insert."""
        planned = [e for e in events if e.get_dagster_event().event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED]
        if len(planned) < 2:
            super().store_event_batch(events)
            return
        with self._connect() as conn:
            result = conn.execute(self.prepare_insert_event_batch(planned).returning(SqlEventLogStorageTable.c.id))
            event_ids = [int(row[0]) for row in result.fetchall()]
        latest = {event.get_dagster_event().asset_key: (event, event_id) for event, event_id in zip(planned, event_ids, strict=True)}
        with self.index_transaction() as conn:
            self._store_asset_event_tags(conn, planned, event_ids)
            for event, event_id in latest.values():
                self._store_asset_event(conn, event, event_id)
        others = [e for e in events if e.get_dagster_event().event_type != dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED]
        if others:
            super().store_event_batch(others)

    def _store_asset_check_evaluation_planned(self, event: dg.EventLogEntry, event_id: int | None) -> None:
        """The rows Dagster writes for a planned check (one per partition), with the event serialized once instead
        of once per row, sent as one executemany: for a 366-day run's 8 checks that was most of creating the run."""
        planned = event.get_dagster_event().event_specific_data
        row = dict(asset_key=planned.asset_key.to_string(), check_name=planned.check_name, run_id=event.run_id,
                   execution_status=AssetCheckExecutionRecordStatus.PLANNED.value, evaluation_event=serialize_value(event),
                   evaluation_event_timestamp=self._event_insert_timestamp(event), evaluation_event_storage_id=event_id)
        partitions = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(), [{**row, "partition": partition} for partition in partitions])


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._use_pool()


class PooledPostgresScheduleStorage(_Pooled, PostgresScheduleStorage):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._use_pool()
