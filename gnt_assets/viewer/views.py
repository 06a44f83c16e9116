"""How each catalog item is drawn: tile layers, vector overlays, legend, the bounds to show first.

The page lists ``/api/collections`` and draws what ``/api/view/{collection}/{item}`` gives; every
family's choice (RGB, colour ramp, hillshade, outlines, choropleth) is made here, from the item.
Paths in tile URLs are relative to the storage root (the server refuses any other).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from gnt_assets.core.errors import InputError
from gnt_assets.core.quicklook import RAMP
from gnt_assets.core.stac_catalog import CATALOG_FOLDER

XYZ = "{z}/{x}/{y}"
RAMP_STOPS = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in RAMP[:: 255 // 8]]  # viridis, the quick looks' ramp
OUTLINE = "#ff2020"
LANDSAT_STRETCH = (0.0, 0.3)  # surface reflectance: a region is too large to scan for percentiles per view
SMOOTH = {"resampling": "bilinear", "reproject": "bilinear"}  # a hillshade of repeated (nearest) pixels is a grid of steps
MINING_MINZOOM = 11  # below this a tile would read hundreds of megabytes of the region


def iter_items(storage_root: Path) -> Iterator[tuple[dict, Path]]:
    """Every item of the catalog with the file it was read from, collection by collection."""
    root = storage_root / CATALOG_FOLDER
    catalog = json.loads((root / "catalog.json").read_text())
    for child in (link for link in catalog["links"] if link["rel"] == "child"):
        collection_path = (root / child["href"]).resolve()
        collection = json.loads(collection_path.read_text())
        for link in (link for link in collection["links"] if link["rel"] == "item"):
            path = (collection_path.parent / link["href"]).resolve()
            yield json.loads(path.read_text()), path


def _href(item_path: Path, asset: dict, storage_root: Path) -> str:
    """An asset's path relative to the storage root (what the tile endpoints take as ``url``)."""
    return os.path.relpath((item_path.parent / asset["href"]).resolve(), storage_root.resolve())


def _tiles(endpoint: str, **params) -> str:
    query = urlencode([(k, v) for k, values in params.items() for v in (values if isinstance(values, list) else [values])], safe=",")
    return f"/{endpoint}/tiles/WebMercatorQuad/{XYZ}.png?{query}"


def _percentiles(values: np.ndarray) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    low, high = (float(v) for v in np.percentile(finite, [2, 98]))
    return (low, high) if high > low else (low - 0.5, high + 0.5)  # a constant sits mid-ramp, as in the quick looks


def _ramp_legend(label: str, stretch: tuple[float, float]) -> dict:
    return {"kind": "ramp", "label": label, "low": stretch[0], "high": stretch[1], "colors": RAMP_STOPS,
            "note": "ends: 2nd and 98th percentile; beyond them clipped"}


def _footprint(item: dict) -> dict | None:
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": item["geometry"], "properties": {}}]} if item.get("geometry") else None


def _date(item: dict) -> str | None:
    moment = item["properties"].get("datetime") or item["properties"].get("start_datetime")
    return moment[:10] if moment else None


def _zarr_view(item: dict, path: Path, root: Path) -> dict:
    import xarray as xr

    asset = item["assets"]["zarr"]
    href = _href(path, asset, root)
    dataset = xr.open_zarr(root / href, consolidated=False)
    if item["collection"] == "conus404-daily":
        day = _date(item)
    else:  # the analysis-ready store spans the whole record; show the last day it holds
        keys, chunks = _written_chunks(root / href, "T2")
        last = dataset["T2"].isel(time=slice(keys[:, 0].max() * chunks[0], (keys[:, 0].max() + 1) * chunks[0]))
        held = last["time"].values[np.isfinite(last.values).any(axis=(1, 2))]
        day = str(held[-1] if len(held) else dataset["time"].values[-1])[:10]
    t2 = dataset["T2"].sel(time=day).values
    stretch = _percentiles(t2) or (0.0, 1.0)
    units = dataset["T2"].attrs.get("units", "K")
    return {"layers": [{"type": "raster", "tiles": _tiles("md", url=href, variable="T2", sel=f"time={day}", rescale=f"{stretch[0]},{stretch[1]}",
                                                          colormap_name="viridis")}],
            "legend": _ramp_legend(f"T2 daily mean {day}, {units}", stretch)}


def _sentinel_view(item: dict, path: Path, root: Path) -> dict:
    import xarray as xr

    href = _href(path, item["assets"]["cube"], root)
    month = _date(item)
    cube = xr.open_zarr(root / href, consolidated=False)["reflectance_median"].sel(time=month)
    rescale, ranges = [], []
    for band in ("red", "green", "blue"):
        stretch = _percentiles(cube.sel(band=band).values) or (0.0, 0.3)
        rescale.append(f"{stretch[0]},{stretch[1]}")
        ranges.append(f"{band} {stretch[0]:.3g}-{stretch[1]:.3g}")
    return {"layers": [{"type": "raster", "tiles": _tiles("md", url=href, variable="reflectance_median", sel=[f"time={month}", "band=red", "band=green", "band=blue"],
                                                          rescale=rescale, nodata="nan")}],
            "legend": {"kind": "text", "lines": [f"RGB: Sentinel-2 red, green, blue monthly median {month[:7]}, reflectance",
                                                  "each stretched 2nd-98th percentile: " + ", ".join(ranges), "transparent: no data"]}}


def _written_chunks(store: Path, variable: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Grid indices of the chunks (or shards) a local zarr array holds, and their shape: where a sparse store has data."""
    import zarr

    array = zarr.open_array(store / variable, mode="r")
    folder = store / variable / "c"
    keys = [p.relative_to(folder).parts for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return np.array(keys, dtype=int).reshape(len(keys), array.ndim), tuple(array.shards or array.chunks)


def _written_bbox(store: Path, variable: str, near: int = 8) -> tuple[float, float, float, float] | None:
    """Lon/lat bounds of the written chunks of a (band, latitude, longitude) store within ``near`` chunks of the
    first one: one cluster of a region that is mostly empty."""
    import zarr

    keys, chunks = _written_chunks(store, variable)
    if not len(keys):
        return None
    first = keys[np.lexsort((keys[:, 2], keys[:, 1]))[0]]
    close = keys[(np.abs(keys[:, 1] - first[1]) <= near) & (np.abs(keys[:, 2] - first[2]) <= near)]
    latitude = zarr.open_array(store / "latitude", mode="r")
    longitude = zarr.open_array(store / "longitude", mode="r")
    rows = [close[:, 1].min() * chunks[1], min((close[:, 1].max() + 1) * chunks[1], latitude.shape[0]) - 1]
    cols = [close[:, 2].min() * chunks[2], min((close[:, 2].max() + 1) * chunks[2], longitude.shape[0]) - 1]
    lats, lons = latitude[rows], longitude[cols]  # pixel centres: the edges are half a pixel further out
    half_lat, half_lon = abs(float(latitude[1] - latitude[0])) / 2, abs(float(longitude[1] - longitude[0])) / 2
    return float(lons.min()) - half_lon, float(lats.min()) - half_lat, float(lons.max()) + half_lon, float(lats.max()) + half_lat


def _mining_view(item: dict, path: Path, root: Path) -> dict:
    href = _href(path, item["assets"]["zarr"], root)
    view = {"layers": [{"type": "raster", "minzoom": MINING_MINZOOM,
                        "tiles": _tiles("md", url=href, variable="reflectance", sel=["band=red", "band=green", "band=blue"],
                                        rescale=[f"{LANDSAT_STRETCH[0]},{LANDSAT_STRETCH[1]}"] * 3, nodata="nan")}],
            "legend": {"kind": "text", "lines": [f"RGB: Landsat red, green, blue annual composite, reflectance {LANDSAT_STRETCH[0]}-{LANDSAT_STRETCH[1]}",
                                                  f"drawn from zoom {MINING_MINZOOM}; transparent: no data (not exported)"]}}
    written = _written_bbox(root / href, "reflectance")
    if written:
        view["focus"] = list(written)
    if "mines" in item["assets"]:
        view["layers"].append({"type": "line", "geojson": "/api/features?" + urlencode({"url": _href(path, item["assets"]["mines"], root), "bbox": ",".join(map(str, item["bbox"]))}),
                               "color": OUTLINE})
        view["legend"]["lines"].append("red outline: mine polygons")
    return view


def _coverage_geojson(item: dict, path: Path, root: Path) -> str:
    return "/api/features?" + urlencode({"url": _href(path, item["assets"]["coverage"], root)})


def _mapterhorn_view(item: dict, path: Path, root: Path, coverage: dict[str, tuple[dict, Path]]) -> dict:
    asset = next(iter(item["assets"].values()))
    href = _href(path, asset, root)
    import rasterio

    with rasterio.open(root / href) as dataset:
        band = dataset.read(1, masked=True, out_shape=(min(dataset.height, 512), min(dataset.width, 512)))
    stretch = _percentiles(band.filled(np.nan).astype("float64")) or (0.0, 1.0)
    unit = (asset.get("raster:bands") or [{}])[0].get("unit", "m")
    view = {"layers": [{"type": "raster", "tiles": _tiles("cog", url=href, rescale=f"{stretch[0]},{stretch[1]}", colormap_name="viridis", **SMOOTH)},
                       {"type": "raster", "opacity": 0.5, "tiles": _tiles("cog", url=href, algorithm="hillshade", algorithm_params='{"buffer": 3}', **SMOOTH)}],
            "legend": _ramp_legend(f"elevation, {unit} (under a hillshade, light from the north-east)", stretch)}
    source = item["properties"].get("dagster:partition", "").split(".")[0]
    if source in coverage:
        view["layers"].append({"type": "line", "geojson": _coverage_geojson(*coverage[source], root), "color": OUTLINE})
        view["legend"]["lines"] = [f"red outline: merged coverage of {source}"]
    return view


def _grid_view(item: dict, path: Path, root: Path) -> dict:
    import pandas as pd

    href = _href(path, item["assets"]["table"], root)
    table = pd.read_parquet(root / href, columns=["band", "method", "value"])
    method = "mean" if "mean" in set(table["method"]) else str(table["method"].iloc[0])
    values = table.loc[(table["band"] == 1) & (table["method"] == method), "value"].to_numpy("float64")
    stretch = _percentiles(values) or (0.0, 1.0)
    name = item["properties"].get("dagster:partition", "")
    return {"layers": [{"type": "fill", "geojson": "/api/features?" + urlencode({"url": href, "band": 1, "method": method}),
                        "property": "value", "stretch": list(stretch), "colors": RAMP_STOPS}],
            "legend": {**_ramp_legend(f"{name} band 1 {method} per cell", stretch), "lines": ["transparent: cells without a value"]}}


def _tile_index_view(item: dict, path: Path, root: Path) -> dict:
    """Raster tiles: drawn from their tile index, each tile filled by its mean (one cell per tile)."""
    import pandas as pd

    href = _href(path, item["assets"]["index"], root)
    means = pd.read_parquet(root / href, columns=["band", "mean"])
    stretch = _percentiles(means.loc[means["band"] == 1, "mean"].to_numpy("float64")) or (0.0, 1.0)
    name = item["properties"].get("dagster:partition", "")
    return {"layers": [{"type": "fill", "geojson": "/api/features?" + urlencode({"url": href, "band": 1, "value": "mean"}),
                        "property": "value", "stretch": list(stretch), "colors": RAMP_STOPS}],
            "legend": {**_ramp_legend(f"{name} band 1 mean per tile", stretch), "lines": ["one cell per tile of the tile index"]}}


def _footprint_view(item: dict) -> dict:
    what = {"mining-training-tiles": "packed training tensors (not a map): the world tiles they cover",
            "mapterhorn-tarballs": "an archive of the COGs"}.get(item["collection"], "the item's footprint")
    return {"layers": [], "legend": {"kind": "text", "lines": [f"outline: {what}" if item.get("geometry") else f"{what}: no footprint to draw"]}}


class UnknownItem(InputError, LookupError):
    """The catalog has no such collection or item."""


def list_collections(storage_root: Path) -> list[dict]:
    """The catalog's collections with their items (id, title, bbox, footprint, Dagster link), sorted by id."""
    storage_root = Path(storage_root)
    collections: dict[str, dict] = {}
    for item, _ in iter_items(storage_root):
        family = item["collection"]
        if family not in collections:
            document = json.loads((storage_root / CATALOG_FOLDER / family / "collection.json").read_text())
            collections[family] = {"id": family, "title": document.get("title", family), "items": []}
        collections[family]["items"].append({
            "id": item["id"], "title": item["properties"].get("title", item["id"]), "bbox": item.get("bbox"),
            "footprint": _footprint(item), "dagster": next((link["href"] for link in item["links"] if link["rel"] == "via"), None)})
    for collection in collections.values():
        collection["items"].sort(key=lambda entry: entry["id"])
    return list(collections.values())


def item_view(storage_root: Path, collection: str, item_id: str) -> dict:
    """One item's layers and legend (and ``focus``, the bounds to look at first, when not its whole bbox)."""
    storage_root = Path(storage_root)
    items = [(item, path) for item, path in iter_items(storage_root) if item["collection"] in (collection, "mapterhorn-coverage")]
    found = next(((item, path) for item, path in items if item["collection"] == collection and item["id"] == item_id), None)
    if found is None:
        raise UnknownItem(f"no item {item_id!r} in collection {collection!r}")
    item, path = found
    if collection in ("conus404-daily", "conus404-analysis-ready"):
        return _zarr_view(item, path, storage_root)
    if collection == "sentinel-cubes":
        return _sentinel_view(item, path, storage_root)
    if collection == "mining-regions":
        return _mining_view(item, path, storage_root)
    if collection == "mapterhorn-cogs":
        coverage = {other["properties"].get("dagster:partition"): (other, where) for other, where in items if other["collection"] == "mapterhorn-coverage"}
        return _mapterhorn_view(item, path, storage_root, coverage)
    if collection == "mapterhorn-coverage":
        return {"layers": [{"type": "line", "geojson": _coverage_geojson(item, path, storage_root), "color": OUTLINE}],
                "legend": {"kind": "text", "lines": ["red outline: valid-pixel coverage of the source files, merged"]}}
    if collection == "raster-grids":
        return _grid_view(item, path, storage_root)
    if collection == "raster-tiles":
        return _tile_index_view(item, path, storage_root)
    return _footprint_view(item)
