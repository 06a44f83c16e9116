"""A static STAC catalog of everything the pipelines produced, kept under the storage root.

Layout (``{root}/stac``)::

    catalog.json                       links to one collection per output family
    {family}/collection.json           extent = union of its items' bboxes and times
    {family}/{item}/{item}.json        one item per materialized partition (or output)

Assets are described by what they are: GeoTIFF/COG with ``proj:`` and ``raster:bands``
(and ``eo:bands`` when the band names are known), zarr stores with the xarray-assets
extension (``xarray:open_kwargs``) and ``proj:`` from their GeoBox, GeoParquet with the
table extension, anything with ``file:size`` and ``file:checksum`` (multihash) when the
pipeline computed a checksum. Items link back to the Dagster asset and partition that
made them. Every JSON document is written atomically; the collection and catalog
files are updated under a local lock, so concurrent partitions never lose an item.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import numpy as np
from upath import UPath

from gnt_assets.core.atomic import atomic_write_text, is_local, local_lock, resolve_directory
from gnt_assets.core.errors import InputError

STAC_VERSION = "1.1.0"
CATALOG_FOLDER = "stac"
PROJ = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EO = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
TABLE = "https://stac-extensions.github.io/table/v1.2.0/schema.json"
XARRAY = "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json"

# One collection per output family: id -> (title, description)
FAMILIES: dict[str, tuple[str, str]] = {
    "mining-regions": ("Mining: Landsat regions", "Country-year zarr regions of Landsat annual composites on the 0.000269495 deg world grid."),
    "mining-training-tiles": ("Mining: training tiles", "Memory-mapped (7, 64, 64) feature and (1, 64, 64) label tensors per country-year."),
    "conus404-daily": ("CONUS404 daily", "Daily means and sums of hourly CONUS404, one item per day of the daily zarr store."),
    "conus404-analysis-ready": ("CONUS404 analysis-ready", "The validated days rechunked for time-series reads."),
    "raster-tiles": ("Rasters: tiles", "Registered rasters as zarr datasets (CF, spatial_ref) with one chunk per tile, and their tile index."),
    "raster-grids": ("Rasters: resampled grids", "Raster values per square or H3 grid cell (GeoParquet; square grids also as zarr and COGs on EASE-Grid 2.0)."),
    "sentinel-cubes": ("Sentinel-2 monthly mosaics", "Cloud-masked monthly median Sentinel-2 L2A mosaics, one item per month and grid cell."),
    "mapterhorn-cogs": ("Mapterhorn COGs", "Per source file: the LERC-compressed cloud-optimized GeoTIFF."),
    "mapterhorn-coverage": ("Mapterhorn coverage", "Valid-pixel footprints of the source files, merged."),
    "mapterhorn-tarballs": ("Mapterhorn tarballs", "The archive of the COGs, with its MD5."),
}

# Which family each cataloged asset belongs to (asset name -> family); resampled_<grid> assets go to raster-grids.
ASSET_FAMILIES = {
    "landsat_regions": "mining-regions", "mining_training_tiles": "mining-training-tiles",
    "conus404_daily": "conus404-daily", "conus404_analysis_ready": "conus404-analysis-ready",
    "raster_tiles": "raster-tiles", "sentinel_mosaic": "sentinel-cubes",
    "mapterhorn_cog": "mapterhorn-cogs", "mapterhorn_source_coverage": "mapterhorn-coverage", "mapterhorn_tarball": "mapterhorn-tarballs",
}


def family_for(asset_key: str) -> str | None:
    """The output family of an asset (``None``: not cataloged)."""
    name = asset_key.split("/")[-1]
    return "raster-grids" if name.startswith("resampled_") else ASSET_FAMILIES.get(name)


MEDIA = {
    ".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".zarr": "application/vnd+zarr",
    ".parquet": "application/vnd.apache.parquet",
    ".gpkg": "application/geopackage+sqlite3",
    ".geojson": "application/geo+json",
    ".json": "application/json",
    ".tar": "application/x-tar",
    ".md5": "text/plain",
    ".csv": "text/csv",
    ".bin": "application/octet-stream",
}


class StacCatalogError(InputError):
    """An output that cannot be described as a STAC item (unknown family, no geometry where one is needed)."""


@dataclass
class Described:
    """What an asset file says about itself: its STAC asset dict, and its footprint when it has one."""

    asset: dict
    extensions: set[str] = field(default_factory=set)
    bbox_wgs84: tuple[float, float, float, float] | None = None
    proj: dict = field(default_factory=dict)  # proj: fields of the asset, also lifted to the item when it is the main one
    times: tuple[datetime, datetime] | None = None


def _media_type(path: UPath) -> str | None:
    return MEDIA.get(path.suffix.lower())


_PER_THREAD = threading.local()


def _crs_facts(crs) -> tuple:
    """(transformer to EPSG:4326 or None when already in it, authority code or None, WKT2) of ``crs``, cached per CRS
    and thread: building a transformer costs several milliseconds, more than describing a small COG, and a ranged
    run describes hundreds of files in the same CRS."""
    from pyproj import CRS, Transformer

    cache = _PER_THREAD.__dict__.setdefault("crs_facts", {})
    key = crs.to_wkt() if hasattr(crs, "to_wkt") else str(crs)
    if key not in cache:
        source = CRS.from_user_input(crs)
        authority = source.to_authority()
        to_wgs84 = None if source.equals(CRS.from_epsg(4326)) else Transformer.from_crs(source, 4326, always_xy=True)
        cache[key] = (to_wgs84, f"{authority[0]}:{authority[1]}" if authority else None, source.to_wkt())
    return cache[key]


def _wgs84_bbox(bounds: Sequence[float], crs) -> tuple[float, float, float, float]:
    to_wgs84 = _crs_facts(crs)[0]
    left, bottom, right, top = bounds if to_wgs84 is None else to_wgs84.transform_bounds(*bounds, densify_pts=21)
    return (float(left), float(bottom), float(right), float(top))


def _proj_code(crs) -> str | None:
    return _crs_facts(crs)[1]


def _proj_fields(crs, shape: Sequence[int], transform, bounds: Sequence[float]) -> dict:
    fields = {"proj:code": _proj_code(crs), "proj:shape": [int(s) for s in shape],
              "proj:transform": [float(v) for v in tuple(transform)[:6]], "proj:bbox": [float(b) for b in bounds]}
    if fields["proj:code"] is None:
        fields["proj:wkt2"] = _crs_facts(crs)[2]
    return fields


def _number(value) -> float | int | None:
    if value is None:
        return None
    value = float(value)
    return None if not np.isfinite(value) else (int(value) if value.is_integer() else value)


def describe_geotiff(path: UPath, *, band_names: Sequence[str] | None = None, unit: str | None = None) -> Described:
    """A GeoTIFF/COG: proj: from its georeferencing, raster:bands (type, nodata, resolution, unit), eo:bands when named.
    Opened as the pipelines open rasters (``core.rio``), so an S3-compatible store's endpoint is the path's own."""
    from gnt_assets.core.rio import open_raster

    with open_raster(path) as dataset:
        bands = []
        for index in range(1, dataset.count + 1):
            band = {"data_type": dataset.dtypes[index - 1], "spatial_resolution": float(abs(dataset.res[0]))}
            nodata = _number(dataset.nodatavals[index - 1])
            if nodata is not None:
                band["nodata"] = nodata
            if unit:
                band["unit"] = unit
            bands.append(band)
        proj = _proj_fields(dataset.crs, dataset.shape, dataset.transform, tuple(dataset.bounds))
        bbox = _wgs84_bbox(tuple(dataset.bounds), dataset.crs)
    asset = {"href": path, "type": _media_type(path), "roles": ["data"], "raster:bands": bands, **proj}
    extensions = {RASTER, PROJ}
    if band_names:
        asset["eo:bands"] = [{"name": name, **({"common_name": name} if name in _COMMON_NAMES else {})} for name in band_names]
        extensions.add(EO)
    return Described(asset, extensions, bbox, proj)


_COMMON_NAMES = {"coastal", "blue", "green", "red", "yellow", "pan", "rededge", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22", "lwir", "lwir11", "lwir12"}
_EO_NAMES = {"swir1": "swir16", "swir2": "swir22", "thermal": "lwir"}


def describe_zarr(path: UPath, *, storage_options: Mapping | None = None, band_names: Sequence[str] | None = None,
                  variables: Sequence[str] | None = None, time_range: tuple[datetime, datetime] | None = None) -> Described:
    """A zarr store: xarray-assets open kwargs, proj: from its GeoBox (odc-geo), raster:bands per data variable,
    eo:bands when its band coordinate names spectral bands; its time axis (or ``time_range``) as times."""
    import odc.geo.xr  # noqa: F401  (registers .odc)
    import xarray as xr
    import zarr

    path = resolve_directory(path)  # a folder published by atomic_directory: the version in use
    options = {} if is_local(path) else dict(storage_options or path.storage_options)  # the store's endpoint and keys
    node = zarr.open(path.path if is_local(path) else str(path), mode="r", storage_options=options or None)
    if isinstance(node, zarr.Array):  # a bare array (raster tiles): xarray cannot open it, zarr-python can
        asset = {"href": path, "type": _media_type(path), "roles": ["data"], "raster:bands": [{"data_type": str(node.dtype)}],
                 "description": f"zarr array {' x '.join(map(str, node.shape))}, chunks {' x '.join(map(str, node.chunks))}"}
        return Described(asset, {RASTER})
    dataset = xr.open_zarr(path.path if is_local(path) else str(path), consolidated=False, storage_options=options or None)
    open_kwargs = {"engine": "zarr", "consolidated": False, "chunks": {}}
    asset = {"href": path, "type": _media_type(path), "roles": ["data"], "xarray:open_kwargs": open_kwargs}
    if storage_options and not is_local(path):  # only what the caller chose to publish: never the store's keys
        asset["xarray:storage_options"] = dict(storage_options)
    extensions = {XARRAY}
    described = Described(asset, extensions)
    geobox = dataset.odc.geobox
    if geobox is not None and geobox.crs is not None:
        bounds = tuple(geobox.extent.boundingbox)
        described.proj = _proj_fields(geobox.crs, geobox.shape, geobox.affine, bounds)
        described.bbox_wgs84 = _wgs84_bbox(bounds, geobox.crs)
        asset.update(described.proj)
        extensions.add(PROJ)
        names = [v for v in (variables or dataset.data_vars) if v in dataset.data_vars and dataset[v].ndim >= 2]
        bands = []
        for name in names:
            band = {"name": name, "data_type": str(dataset[name].dtype), "spatial_resolution": float(abs(geobox.resolution.x))}
            units = dataset[name].attrs.get("units")
            if units:
                band["unit"] = str(units)
            nodata = _number(dataset[name].attrs.get("_FillValue", dataset[name].encoding.get("_FillValue")))
            if nodata is not None:
                band["nodata"] = nodata
            bands.append(band)
        if bands:
            asset["raster:bands"] = bands
            extensions.add(RASTER)
    if not band_names and "band" in dataset.coords and dataset["band"].dtype.kind in "UO":  # the store names its bands
        band_names = [str(b) for b in dataset["band"].values]
    if band_names:
        asset["eo:bands"] = [{"name": n, **({"common_name": _EO_NAMES.get(n, n)} if _EO_NAMES.get(n, n) in _COMMON_NAMES else {})} for n in band_names]
        extensions.add(EO)
    if time_range is not None:
        described.times = time_range
    elif "time" in dataset.coords and dataset.sizes.get("time", 0):
        times = dataset["time"].values
        described.times = (_to_datetime(times.min()), _to_datetime(times.max()))
    return described


def _to_datetime(value) -> datetime:
    stamp = np.datetime64(value, "s").astype("datetime64[s]").item()
    return stamp.replace(tzinfo=UTC)


def describe_parquet(path: UPath, *, role: str = "data") -> Described:
    """A (Geo)Parquet file: table:columns, table:row_count, table:primary_geometry and the bbox of its geo metadata.
    ``role`` "metadata": context for the item's data (the mine polygons beside a region), outside its footprint."""
    import pyarrow.parquet as pq

    with path.open("rb") as handle:
        parquet = pq.ParquetFile(handle)
        schema = parquet.schema_arrow
        rows = parquet.metadata.num_rows
        geo = json.loads((schema.metadata or {}).get(b"geo", b"null") or "null")
    columns = [{"name": f.name, "type": str(f.type)} for f in schema]
    asset = {"href": path, "type": _media_type(path), "roles": [role], "table:columns": columns, "table:row_count": int(rows)}
    described = Described(asset, {TABLE})
    if geo:
        primary = geo.get("primary_column", "geometry")
        asset["table:primary_geometry"] = primary
        column = geo.get("columns", {}).get(primary, {})
        bbox = column.get("bbox")
        crs = column.get("crs") or "EPSG:4326"
        if bbox and all(np.isfinite(bbox)):
            described.bbox_wgs84 = _wgs84_bbox(bbox, crs)
    return described


def describe_vector(path: UPath) -> Described:
    """A GeoPackage/GeoJSON layer: its size and the WGS84 bbox of its features (pyogrio's layer info)."""
    import pyogrio

    described = describe_file(path)
    info = pyogrio.read_info(str(path), force_total_bounds=True)
    bounds = info.get("total_bounds")
    if bounds is not None and info.get("crs") and np.all(np.isfinite(bounds)):
        described.bbox_wgs84 = _wgs84_bbox(tuple(float(b) for b in bounds), info["crs"])
    return described


def describe_file(path: UPath, *, md5: str | None = None, sha256: str | None = None, role: str = "data") -> Described:
    """Any file: its size and, when the pipeline computed one, its checksum as a multihash
    (md5: ``d5 10`` + digest, sha2-256: ``12 20`` + digest)."""
    asset = {"href": path, "type": _media_type(path), "roles": [role], "file:size": int(path.stat().st_size)}
    if md5:
        if not re.fullmatch(r"[0-9a-f]{32}", md5):
            raise StacCatalogError(f"{path}: {md5!r} is not an MD5 hex digest")
        asset["file:checksum"] = "d510" + md5
    elif sha256:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise StacCatalogError(f"{path}: {sha256!r} is not a SHA-256 hex digest")
        asset["file:checksum"] = "1220" + sha256
    return Described(asset, {FILE})


def read_md5_sidecar(path: UPath) -> str | None:
    """The digest of ``{path}.md5`` in md5sum format (written by the tar IO manager), if it exists."""
    sidecar = path.with_name(path.name + ".md5")
    if not sidecar.exists():
        return None
    return sidecar.read_text().split()[0].lower()


def describe(path: UPath, **hints) -> Described:
    """The right describer for the file's kind (by suffix and folder)."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return describe_geotiff(path, **{k: v for k, v in hints.items() if k in ("band_names", "unit")})
    if suffix == ".zarr":
        return describe_zarr(path, **{k: v for k, v in hints.items() if k in ("storage_options", "band_names", "variables", "time_range")})
    if suffix == ".parquet":
        return describe_parquet(path, role=hints.get("role", "data"))
    if suffix in (".gpkg", ".geojson", ".fgb"):
        return describe_vector(path)
    md5 = hints.get("md5") or (read_md5_sidecar(path) if suffix == ".tar" else None)
    return describe_file(path, md5=md5, sha256=hints.get("sha256"), role=hints.get("role", "data"))


def item_id_for(asset_key: str, partition: str | None) -> str:
    """A file-safe, stable item id: ``{asset}`` or ``{asset}__{partition}`` (``|`` and ``/`` become ``-``)."""
    raw = asset_key if not partition else f"{asset_key}__{partition}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def dagster_asset_url(asset_key: str, partition: str | None, base_url: str | None = None) -> str:
    """The asset's page in the Dagster UI (``GNT_DAGSTER_URL``, default the ``make dev`` address), at the partition."""
    base = (base_url or os.environ.get("GNT_DAGSTER_URL") or "http://127.0.0.1:3000").rstrip("/")
    url = f"{base}/assets/{'/'.join(quote(p, safe='') for p in asset_key.split('/'))}"
    return f"{url}?partition={quote(partition, safe='')}" if partition else url


# Families the viewer (``make view``) draws as a map; the others it shows as a footprint outline at most.
MAPPED_FAMILIES = frozenset({"mining-regions", "conus404-daily", "conus404-analysis-ready", "raster-tiles", "raster-grids",
                             "sentinel-cubes", "mapterhorn-cogs", "mapterhorn-coverage"})


def viewer_url(family: str, item_id: str, base_url: str | None = None) -> str:
    """The item on the viewer's map (``GNT_VIEWER_URL``, default the ``make view`` address)."""
    base = (base_url or os.environ.get("GNT_VIEWER_URL") or "http://127.0.0.1:8008").rstrip("/")
    return f"{base}/#{quote(family, safe='')}/{quote(item_id, safe='')}"


def _relative(target: UPath, start: UPath) -> str:
    if is_local(target) and is_local(start):
        return os.path.relpath(target.path, start.path)
    return str(target)


def _iso(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _union_bbox(boxes: Sequence[Sequence[float]]) -> list[float]:
    array = np.asarray(boxes, dtype="float64")
    return [float(array[:, 0].min()), float(array[:, 1].min()), float(array[:, 2].max()), float(array[:, 3].max())]


def build_item(
    *, family: str, asset_key: str, partition: str | None, assets: Mapping[str, Described],
    times: tuple[datetime, datetime] | None = None, created: datetime | None = None, title: str | None = None,
    properties: Mapping | None = None, item_folder: UPath, dagster_url: str | None = None,
    footprint: Sequence[float] | None = None,
) -> dict:
    """The item dict: footprint = union of its assets' footprints; ``proj:`` of the first georeferenced asset on the item."""
    if family not in FAMILIES:
        raise StacCatalogError(f"unknown output family {family!r}; known: {', '.join(FAMILIES)}")
    created = created or datetime.now(UTC)
    boxes = [tuple(footprint)] if footprint else [d.bbox_wgs84 for d in assets.values() if d.bbox_wgs84 is not None and "data" in d.asset["roles"]]
    times = times or next((d.times for d in assets.values() if d.times is not None), None)
    item_id = item_id_for(asset_key, partition)
    props: dict = {"title": title or f"{asset_key}" + (f" {partition}" if partition else ""), "created": _iso(created),
                   "dagster:asset_key": asset_key}
    if partition:
        props["dagster:partition"] = partition
    if times is None:
        props["datetime"] = _iso(created)
    elif times[0] == times[1]:
        props["datetime"] = _iso(times[0])
    else:
        props.update({"datetime": None, "start_datetime": _iso(times[0]), "end_datetime": _iso(times[1])})
    main = None if footprint else next((d.proj for d in assets.values() if d.proj), None)  # a footprint: the item is part of the asset
    if main:
        props.update(main)
    props.update(properties or {})
    extensions: set[str] = set()
    stac_assets = {}
    for key, described in assets.items():
        asset = dict(described.asset)
        asset["href"] = _relative(UPath(asset["href"]), item_folder)
        stac_assets[key] = {k: v for k, v in asset.items() if v is not None}
        extensions |= described.extensions
    if main:
        extensions.add(PROJ)
    item = {
        "type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": sorted(extensions), "id": item_id,
        "geometry": None, "properties": props,
        "links": [{"rel": "via", "href": dagster_asset_url(asset_key, partition, dagster_url), "type": "text/html",
                   "title": f"Dagster asset {asset_key}" + (f", partition {partition}" if partition else "")}],
        "assets": stac_assets, "collection": family,
    }
    if boxes:
        left, bottom, right, top = _union_bbox(boxes)
        item["bbox"] = [left, bottom, right, top]
        item["geometry"] = {"type": "Polygon", "coordinates": [[[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]]}
    return item


def _read_json(path: UPath) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _write_json(path: UPath, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(document, indent=1, default=str) + "\n", durable=False)


def catalog_root(storage_root: UPath) -> UPath:
    return UPath(storage_root) / CATALOG_FOLDER


def write_item(storage_root: UPath, item: dict) -> UPath:
    """Writes the item, then folds its bbox and time into its collection and lists the collection in the catalog.

    Re-writing an item (a re-run partition) replaces it; the collection extent only grows
    (a shrunken output leaves a slightly larger extent, never a missing one)."""
    path = _write_item_file(storage_root, item)
    fold_items(storage_root, [item])
    return path


def _write_item_file(storage_root: UPath, item: dict) -> UPath:
    folder = catalog_root(storage_root) / item["collection"] / item["id"]
    item_path = folder / f"{item['id']}.json"
    item = {**item, "links": [*item["links"],
                              {"rel": "collection", "href": "../collection.json", "type": "application/json"},
                              {"rel": "parent", "href": "../collection.json", "type": "application/json"},
                              {"rel": "root", "href": "../../catalog.json", "type": "application/json"}]}
    _write_json(item_path, item)
    return item_path


def fold_items(storage_root: UPath, items: Sequence[dict]) -> None:
    """Folds the items (of one collection, already written) into their collection's extent and links, and lists
    the collection in the catalog: one read and one write of collection.json for all of them."""
    if not items:
        return
    root = catalog_root(storage_root)
    family = items[0]["collection"]
    collection_path = root / family / "collection.json"
    catalog_path = root / "catalog.json"
    with local_lock(root):  # the lock file is {storage root}/stac.lock, outside the catalog
        collection = _read_json(collection_path) or _new_collection(family, items[0])
        linked = {link["href"] for link in collection["links"] if link["rel"] == "item"}
        for item in items:
            _fold_extent(collection, item)
            href = f"./{item['id']}/{item['id']}.json"
            if href not in linked:
                linked.add(href)
                collection["links"].append({"rel": "item", "href": href, "type": "application/geo+json"})
        _write_json(collection_path, collection)
        catalog = _read_json(catalog_path) or _new_catalog()
        child = f"./{family}/collection.json"
        if not any(link["rel"] == "child" and link["href"] == child for link in catalog["links"]):
            catalog["links"].append({"rel": "child", "href": child, "type": "application/json", "title": FAMILIES[family][0]})
            _write_json(catalog_path, catalog)


def _new_catalog() -> dict:
    return {"type": "Catalog", "stac_version": STAC_VERSION, "id": "gnt-assets", "title": "GNT Assets outputs",
            "description": "Everything the gnt_assets pipelines materialized, one collection per output family.",
            "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]}


def _new_collection(family: str, item: dict) -> dict:
    """A collection whose extent is its first item's (the world when the item has no footprint)."""
    title, description = FAMILIES[family]
    props = item["properties"]
    interval = [props.get("start_datetime") or props["datetime"], props.get("end_datetime") or props["datetime"]]
    return {"type": "Collection", "stac_version": STAC_VERSION, "stac_extensions": [], "id": family, "title": title,
            "description": description, "license": "other",
            "extent": {"spatial": {"bbox": [item.get("bbox", [-180.0, -90.0, 180.0, 90.0])]}, "temporal": {"interval": [interval]}},
            "links": [{"rel": "root", "href": "../catalog.json", "type": "application/json"},
                      {"rel": "parent", "href": "../catalog.json", "type": "application/json"}]}


def _fold_extent(collection: dict, item: dict) -> None:
    props = item["properties"]
    interval = collection["extent"]["temporal"]["interval"][0]
    interval[0] = min(interval[0], props.get("start_datetime") or props["datetime"])
    interval[1] = max(interval[1], props.get("end_datetime") or props["datetime"])
    if "bbox" in item:
        collection["extent"]["spatial"]["bbox"] = [_union_bbox([collection["extent"]["spatial"]["bbox"][0], item["bbox"]])]


def tiles_footprint(rows: Mapping[str, Sequence]) -> tuple[float, float, float, float] | None:
    """WGS84 bbox of the world tiles a packed tensor's rows name (``tile_ix``/``tile_iy``), if it names any."""
    from gnt_assets.core.worldgrid import world_tile

    pairs = sorted(set(zip(rows.get("tile_ix", ()), rows.get("tile_iy", ()), strict=False)))
    if not pairs:
        return None
    return tuple(_union_bbox([tuple(world_tile(int(ix), int(iy)).extent.boundingbox) for ix, iy in pairs]))


def catalog_output(
    storage_root: UPath | str, asset_key: str, partition: str | None, assets: Mapping[str, UPath | str], *,
    family: str | None = None, times: tuple[datetime, datetime] | None = None, hints: Mapping[str, Mapping] | None = None,
    footprint: Sequence[float] | None = None, title: str | None = None,
) -> UPath:
    """Describes ``assets`` (name -> file or store), builds the item and writes it into the catalog; returns its path.

    ``family`` defaults to the asset's (``ASSET_FAMILIES``); ``hints`` passes describer options per asset."""
    family = family or family_for(asset_key)
    if family is None:
        raise StacCatalogError(f"{asset_key}: no STAC output family; add it to ASSET_FAMILIES or pass family=")
    described = {name: describe(UPath(path), **dict((hints or {}).get(name, {}))) for name, path in assets.items()}
    root = UPath(storage_root)
    folder = catalog_root(root) / family / item_id_for(asset_key, partition)
    item = build_item(family=family, asset_key=asset_key, partition=partition, assets=described, times=times,
                      title=title, item_folder=folder, footprint=footprint)
    return write_item(root, item)


class StacItemBatch:
    """Items of many partitions of one asset (a ranged run's files): each item is written as it comes, its
    collection updated once per ``fold_every`` items and on ``close``. Folding each item alone rewrites the
    collection.json, which lists every item, once per item: quadratic in a collection of tens of thousands. Items
    not yet folded when a run dies are folded when their partitions run again."""

    def __init__(self, storage_root: UPath | str, asset_key: str, *, family: str | None = None, fold_every: int = 100):
        self.root, self.asset_key, self.fold_every = UPath(storage_root), asset_key, fold_every
        self.family = family or family_for(asset_key)
        if self.family is None:
            raise StacCatalogError(f"{asset_key}: no STAC output family; add it to ASSET_FAMILIES or pass family=")
        self.pending: list[dict] = []

    def add(self, partition: str, assets: Mapping[str, UPath | str], *, hints: Mapping[str, Mapping] | None = None) -> UPath:
        """Describes ``assets``, writes the partition's item and returns its path (as ``catalog_output``)."""
        described = {name: describe(UPath(path), **dict((hints or {}).get(name, {}))) for name, path in assets.items()}
        folder = catalog_root(self.root) / self.family / item_id_for(self.asset_key, partition)
        item = build_item(family=self.family, asset_key=self.asset_key, partition=partition, assets=described, item_folder=folder)
        path = _write_item_file(self.root, item)
        self.pending.append(item)
        if len(self.pending) >= self.fold_every:
            self.close()
        return path

    def close(self) -> None:
        """Folds the items written since the last fold."""
        fold_items(self.root, self.pending)
        self.pending = []
