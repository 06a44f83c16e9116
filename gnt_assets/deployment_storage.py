"""PostgreSQL storages for the deployment instance that keep a small pool of connections.

Dagster's stock PostgreSQL storages open a new connection for every call (SQLAlchemy ``NullPool``), so
every event is a connect, an insert and a notify. The daemon writes one planned-materialization event
per partition of each run it creates: a ranged CONUS404 run of 366 days took about 30 s to create
(81 ms per event), against about 8 s pooled (23 ms per event), measured on the 2-core machine at load
14 (``benchmarks/conus404_record.py`` counts the whole record). Each process keeps up to ``POOL_SIZE``
idle connections per storage and opens up to ``POOL_OVERFLOW`` more while busy; a connection is replaced
after ``POOL_RECYCLE_SECONDS`` (no ping before each use: that is one more round trip per event).
``deploy/dagster.postgres.yaml`` names these classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._use_pool()


class PooledPostgresScheduleStorage(_Pooled, PostgresScheduleStorage):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._use_pool()
