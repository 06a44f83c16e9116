"""GeoParquet (and plain Parquet) tables below ``{storage root}/tables/``.

Vector outputs (clusters, grids, tile indexes, coverage, per-cell values) and
tabular reports are (Geo)DataFrames; the schema is enforced by the asset's
dagster-pandera type before this manager writes anything. A downstream asset
that reads every partition gets a ``{partition: frame}`` dict; give its input
``metadata={"allow_missing_partitions": True}`` to skip partitions not yet made.
"""

from __future__ import annotations

import io

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

from gnt_assets.core.atomic import atomic_write_bytes
from gnt_assets.core.keys import PartitionKeyError, check_key
from gnt_assets.resources.storage import StorageResource


def write_table(frame: pd.DataFrame, path: UPath) -> None:
    """Serialise in memory, then publish in one atomic write; GeoDataFrames keep their CRS."""
    buffer = io.BytesIO()
    if isinstance(frame, gpd.GeoDataFrame):
        frame.to_parquet(buffer, index=False, schema_version="1.1.0", write_covering_bbox=True)
    else:
        frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def read_table(path: UPath) -> pd.DataFrame:
    with path.open("rb") as handle:
        data = handle.read()
    metadata = pq.read_schema(io.BytesIO(data)).metadata or {}
    if b"geo" in metadata:
        return gpd.read_parquet(io.BytesIO(data))
    return pd.read_parquet(io.BytesIO(data))


class _GeoParquetIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: geoparquet_io_manager stores DataFrames, got {type(obj).__name__}")
        write_table(obj, path)
        context.add_output_metadata(
            {"rows": len(obj), "files": 1, "bytes": int(path.stat().st_size)}
        )

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        return read_table(path)

    def get_path_for_partition(self, context, path: UPath, partition: str) -> UPath:
        """One checked path segment per key (per dimension for multi-partitions): no key climbs out with ``..`` or ``/``."""
        definition = context.asset_partitions_def
        segments = partition.split("/")
        expected = len(definition.partitions_defs) if isinstance(definition, dg.MultiPartitionsDefinition) else 1
        name = context.asset_key.to_user_string()
        if len(segments) != expected:
            raise PartitionKeyError(f"{name}: partition key {partition!r} contains '/'; it would nest folders below tables/{name}")
        for segment in segments:
            check_key(segment, what=f"{name} partition key")
        return path.joinpath(*segments)


class GeoParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Stores DataFrames and GeoDataFrames as one Parquet file per asset partition."""

    storage: StorageResource

    def create_io_manager(self, context: dg.InitResourceContext) -> _GeoParquetIOManager:
        return _GeoParquetIOManager(base_path=self.storage.root_path / "tables")
