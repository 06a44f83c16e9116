"""The cube layout derived from the grid: one mosaic GeoBox, each cell a whole number of zarr chunks.

Cell bounds in the cube CRS are snapped to the nearest chunk boundary of a GeoBox
anchored at multiples of the chunk size. Cells sharing an edge snap to the same
boundary, so their regions never share a chunk; any grid where two regions would
overlap is refused naming both cells. (Major TOM cells are not windows of one cube:
each is a store of its own, see tiling.MajorTomTiling.cell_stores.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_zeros

from gnt_assets.core.zarr_regions import ZarrLayoutError
from gnt_assets.sentinel.radiometry import CUBE_OFFSET, CUBE_SCALE

VARIABLE = "reflectance_median"
TIME_START = "2017-01-01"  # first month of the cube's time axis (Sentinel-2 L2A's global archive starts here)
DEFAULT_END_MONTH = "2026-12-01"
BLOCK_MONTHS = 12


def month_index(month: str) -> int:
    """Index of a month on the cube's time axis: ``12 * (y - 2017) + (m - 1)`` (the seed's rule)."""
    year, mon = int(month[:4]), int(month[5:7])
    index = 12 * (year - int(TIME_START[:4])) + (mon - int(TIME_START[5:7]))
    if index < 0:
        raise ValueError(f"month {month} is before the cube's first month {TIME_START[:7]}")
    return index


def axis_months(length: int) -> list[str]:
    """The first ``length`` months of the time axis as ``YYYY-MM-01``."""
    y0, m0 = int(TIME_START[:4]), int(TIME_START[5:7]) - 1
    return [f"{y0 + (m0 + i) // 12:04d}-{(m0 + i) % 12 + 1:02d}-01" for i in range(length)]


def axis_length(months: list[str], end_month: str = DEFAULT_END_MONTH, block: int = BLOCK_MONTHS) -> int:
    """Time steps a cube needs to hold ``months`` and the configured end, rounded up to whole blocks:
    the axis only ever grows by whole blocks, so two runs asking for nearby months agree on its length."""
    last = max(month_index(m) for m in [end_month, *months])
    return -(-(last + 1) // block) * block


def axis_problems(times) -> list[str]:
    """Why stored time labels are not the monthly axis from TIME_START (empty list: they are)."""
    labels = [str(t)[:10] for t in np.asarray(times).astype("datetime64[D]")]
    expected = axis_months(len(labels))
    problems = []
    if not labels:
        problems.append("the time axis is empty")
    for index, (got, want) in enumerate(zip(labels, expected, strict=True)):
        if got != want:
            problems.append(f"time[{index}] is {got}, the monthly axis from {TIME_START[:7]} has {want} there")
            break
    return problems


@dataclass(frozen=True)
class CubeLayout:
    geobox: GeoBox
    chunk_px: int
    regions: dict[str, tuple[slice, slice]]  # chunk key -> (rows, cols) of the mosaic
    shard_px: int = 0  # > chunk_px: zarr v3 shards of this many pixels a side, each region whole shards

    @property
    def sharded(self) -> bool:
        return self.shard_px > self.chunk_px

    def cell_geobox(self, chunk: str) -> GeoBox:
        rows, cols = self.regions[chunk]
        return self.geobox[rows, cols]

    def chunks_of(self, chunk: str) -> set[tuple[int, int]]:
        rows, cols = self.regions[chunk]
        c = self.chunk_px
        return {(r, k) for r in range(rows.start // c, rows.stop // c) for k in range(cols.start // c, cols.stop // c)}


def cube_layout(cells: gpd.GeoDataFrame, crs: str, resolution: float, chunk_px: int) -> CubeLayout:
    """Layout for one grid's cells (columns ``chunk``, ``geometry``)."""
    unit = chunk_px * resolution
    bounds = cells.to_crs(crs).bounds
    snapped = pd.DataFrame({
        "x0": np.round(bounds.minx / unit), "x1": np.round(bounds.maxx / unit),
        "y0": np.round(bounds.miny / unit), "y1": np.round(bounds.maxy / unit),
    }).astype(int)
    snapped.index = cells["chunk"].values
    small = snapped.index[(snapped.x1 <= snapped.x0) | (snapped.y1 <= snapped.y0)].tolist()
    if small:
        raise ZarrLayoutError(f"grid cells {small[:5]} are smaller than one {chunk_px}-pixel chunk at {resolution} {crs} units; "
                              "use a smaller chunk or larger cells")
    x_min, y_max = int(snapped.x0.min()), int(snapped.y1.max())
    width, height = int(snapped.x1.max()) - x_min, y_max - int(snapped.y0.min())
    geobox = GeoBox((height * chunk_px, width * chunk_px), Affine(resolution, 0, x_min * unit, 0, -resolution, y_max * unit), crs)
    regions, owner = {}, {}
    for chunk, row in snapped.iterrows():
        rows = slice((y_max - row.y1) * chunk_px, (y_max - row.y0) * chunk_px)
        cols = slice((row.x0 - x_min) * chunk_px, (row.x1 - x_min) * chunk_px)
        regions[chunk] = (rows, cols)
        for r in range(rows.start // chunk_px, rows.stop // chunk_px):
            for k in range(cols.start // chunk_px, cols.stop // chunk_px):
                if (r, k) in owner:
                    raise ZarrLayoutError(f"grid cells {owner[(r, k)]} and {chunk} would share zarr chunk ({r}, {k}); "
                                          "use a grid without overlapping cells")
                owner[(r, k)] = chunk
    return CubeLayout(geobox=geobox, chunk_px=chunk_px, regions=regions)


def month_label(month: str) -> np.datetime64:
    return np.datetime64(month[:7] + "-01", "ns")


def cube_template(layout: CubeLayout, months: list[str], bands: list[str]) -> xr.Dataset:
    """Metadata-only template: (time, y, x, band) uint16, fill 0, CF attributes and spatial_ref. One lazy dask
    chunk: the stored chunks come from ``cube_encoding``, and a dask chunk per zarr chunk made a graph of a task
    per chunk and month (half a million for one 60 km chunk's cube, minutes and GBs before anything was written)."""
    spatial = xr_zeros(layout.geobox, dtype="uint16", chunks=tuple(layout.geobox.shape))
    ydim, xdim = spatial.dims
    data = (spatial.expand_dims(time=[month_label(m) for m in months], band=list(bands))
            .transpose("time", ydim, xdim, "band")
            .chunk({"time": -1, ydim: -1, xdim: -1, "band": -1}))
    data.attrs = {"long_name": "cloud-masked monthly median surface reflectance", "units": "1",
                  "comment": "stored as uint16 DN, reflectance = DN * 1e-4 - 0.1 (CF scale_factor/add_offset); every "
                             "item harmonized to it from raster:bands or s2:processing_baseline",
                  "cell_methods": "time: median (SCL classes 4, 5 only)", "grid_mapping": "spatial_ref"}
    dataset = data.to_dataset(name=VARIABLE)
    dataset["time"].attrs["long_name"] = "first day of the month"
    return dataset


def cube_encoding(layout: CubeLayout, bands: list[str], block: int = BLOCK_MONTHS) -> dict:
    """Data one chunk per cell-chunk and month (sharded: one object per shard and month, the chunks inside it);
    the time labels one chunk per block, so a cube grown block by block stores the same objects as one created
    at its final length."""
    data = {"chunks": (1, layout.chunk_px, layout.chunk_px, len(bands)), "_FillValue": 0, "dtype": "uint16",
            "scale_factor": CUBE_SCALE, "add_offset": CUBE_OFFSET}
    if layout.sharded:
        data["shards"] = (1, layout.shard_px, layout.shard_px, len(bands))
    return {VARIABLE: data, "time": {"chunks": (block,), "units": f"days since {TIME_START}", "dtype": "int64"}}


def region_dataset(layout: CubeLayout, chunk: str, month: str, bands: list[str], median: np.ndarray) -> xr.Dataset:
    """One partition's data (1, h, w, band) with the labels that place it in the cube: the median as the cube
    stores it (uint16 DN, 0 for fill), written as is (``encoded``): decoding a cell to float64 reflectance for
    xarray to encode back took about 26 bytes per pixel and band, 13 times the data."""
    cell = xr_zeros(layout.cell_geobox(chunk), dtype="uint16")
    ydim, xdim = cell.dims
    data = xr.DataArray(np.asarray(median, dtype=np.uint16)[np.newaxis], dims=("time", ydim, xdim, "band"),
                        coords={"time": [month_label(month)], ydim: cell[ydim], xdim: cell[xdim], "band": list(bands)})
    return data.to_dataset(name=VARIABLE)


def region_slices(layout: CubeLayout, chunk: str, time_index: int, ydim: str, xdim: str) -> dict[str, slice]:
    rows, cols = layout.regions[chunk]
    return {"time": slice(time_index, time_index + 1), ydim: rows, xdim: cols}


def month_region(layout: CubeLayout, chunk: str, month: str, ydim: str = "y", xdim: str = "x") -> dict[str, slice]:
    """Where one cell's month goes: the month's own index on the axis, the cell's rows and columns."""
    return region_slices(layout, chunk, month_index(month), ydim, xdim)


def chunk_size_px(d: float, res_m: float, per_side: int = 1) -> int:
    """Chunk pixels so a cell of d metres spans about ``per_side`` chunks per side."""
    return max(1, math.floor(d / res_m / per_side))
