"""Results of any grid as one GeoPackage layer: a row per cell, a column per method and band.

The long GeoParquet table (cell_id, band, method, value, valid_fraction) is what analysis code
reads; a GIS user wants one feature per cell to style. GeoPackage opens in every QGIS build,
including those whose GDAL has no Parquet driver (Debian 12's QGIS 3.22 with GDAL 3.6).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import geopandas as gpd
from upath import UPath

from gnt_assets.core.atomic import atomic_write_bytes

LAYER = "cells"


def wide_cells(table: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """``cell_id``, ``{method}_b{band}`` and ``{method}_b{band}_valid_fraction`` columns, the cell polygon."""
    keys = table["method"] + "_b" + table["band"].astype(str)
    values = table.assign(key=keys).pivot(index="cell_id", columns="key", values=["value", "valid_fraction"])
    values.columns = [key if what == "value" else f"{key}_valid_fraction" for what, key in values.columns]
    columns = sorted(values.columns)
    geometry = table.drop_duplicates("cell_id").set_index("cell_id").geometry
    return gpd.GeoDataFrame(values[columns], geometry=geometry.reindex(values.index), crs=table.crs).reset_index()


def write_cell_layer(table: gpd.GeoDataFrame, path: UPath) -> UPath:
    """The wide layer as a GeoPackage at ``path``, written aside and put in place whole."""
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / path.name
        wide_cells(table).to_file(staged, layer=LAYER, driver="GPKG")
        atomic_write_bytes(path, staged.read_bytes())
    return path
