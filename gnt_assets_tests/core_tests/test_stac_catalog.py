"""The STAC catalog of outputs: items per output kind, validated by stac-validator, searchable through rustac serve."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pystac
import pytest
import rasterio
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_zeros
from pystac_client import Client
from rasterio.transform import from_origin
from stac_validator.validate import StacValidate
from upath import UPath

from gnt_assets.core.stac_catalog import CATALOG_FOLDER, StacItemBatch, catalog_output, dagster_asset_url, item_id_for
from gnt_assets.sentinel.local import stac_api_server

SCHEMAS = Path(pystac.__file__).parent / "validation" / "jsonschemas"
SPEC = "https://schemas.stacspec.org/v1.1.0"


def schema_map() -> dict[str, str]:
    """STAC 1.1.0 core and GeoJSON schemas from the copies pystac ships (validation runs offline)."""
    mapping = {f"{SPEC}/item-spec/json-schema/{name}.json": str(SCHEMAS / "stac-spec" / "v1.1.0" / f"{name}.json")
               for name in ("bands", "basics", "common", "data-values", "datetime", "instrument", "item", "licensing", "provider")}
    mapping[f"{SPEC}/catalog-spec/json-schema/catalog.json"] = str(SCHEMAS / "stac-spec" / "v1.1.0" / "catalog.json")
    mapping[f"{SPEC}/collection-spec/json-schema/collection.json"] = str(SCHEMAS / "stac-spec" / "v1.1.0" / "collection.json")
    for name in ("Feature", "Geometry"):
        mapping[f"https://geojson.org/schema/{name}.json"] = str(SCHEMAS / "geojson" / f"{name}.json")
    return mapping


def validate(path: Path) -> dict:
    validator = StacValidate(str(path), core=True, schema_map=schema_map())
    validator.run()
    return validator.message[-1]


def write_cog(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype="float32", crs="EPSG:25832",
                       transform=from_origin(500_000, 5_600_000, 10, 10), nodata=-9999, tiled=True, blockxsize=16, blockysize=16) as dataset:
        dataset.write(np.arange(32 * 32, dtype="float32").reshape(1, 32, 32))


def write_daily_zarr(path: Path, days: list[str], bbox=(10.0, 50.0, 11.0, 51.0)) -> None:
    geobox = GeoBox.from_bbox(bbox, "EPSG:4326", shape=(16, 16))
    band = xr_zeros(geobox, dtype="float32").expand_dims(time=np.array(days, dtype="datetime64[ns]"))
    dataset = band.to_dataset(name="T2")
    dataset["T2"].attrs["units"] = "K"
    dataset.to_zarr(str(path), mode="w", consolidated=False)


def day(text: str) -> tuple[datetime, datetime]:
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return moment, moment


@pytest.fixture
def catalog(tmp_path) -> Path:
    """One output of each kind: COG, zarr store, GeoParquet, GeoPackage, tarball with its MD5, packed tensors."""
    root = tmp_path / "storage"
    write_cog(root / "cogs" / "dem.tif")
    catalog_output(UPath(root), "mapterhorn_cog", "swissalti.dem", {"dem": root / "cogs" / "dem.tif"}, hints={"dem": {"unit": "m"}})
    write_daily_zarr(root / "daily.zarr", ["2020-07-01", "2020-07-02"])
    catalog_output(UPath(root), "conus404_daily", "2020-07-01", {"zarr": root / "daily.zarr"}, times=day("2020-07-01"))
    write_daily_zarr(root / "region.zarr", ["2020-01-01"], bbox=(24.0, -20.0, 24.5, -19.5))
    catalog_output(UPath(root), "landsat_regions", "BWA|2020", {"zarr": root / "region.zarr"},
                   hints={"zarr": {"band_names": ("blue", "green", "red", "nir", "swir1")}},
                   times=(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 12, 31, 23, 59, 59, tzinfo=UTC)))
    cells = gpd.GeoDataFrame({"cell_id": ["a", "b"], "value": [1.0, 2.0]},
                             geometry=[shapely.box(10, 50, 10.5, 50.5), shapely.box(10.5, 50, 11, 50.5)], crs=4326)
    cells.to_parquet(root / "cells.parquet")
    catalog_output(UPath(root), "resampled_square_1km", "dem", {"table": root / "cells.parquet"})
    cells.to_crs(3857).to_file(root / "coverage.gpkg")
    catalog_output(UPath(root), "mapterhorn_source_coverage", "swissalti", {"coverage": root / "coverage.gpkg"})
    payload = b"tar bytes" * 100
    (root / "swissalti.tar").write_bytes(payload)
    (root / "swissalti.tar.md5").write_text(f"{hashlib.md5(payload).hexdigest()}  swissalti.tar\n")
    catalog_output(UPath(root), "mapterhorn_tarball", "swissalti", {"tarball": root / "swissalti.tar", "md5": root / "swissalti.tar.md5"},
                   hints={"md5": {"role": "metadata"}})
    (root / "tiles.bin").write_bytes(b"\0" * 64)
    catalog_output(UPath(root), "mining_training_tiles", "BWA|2020", {"data": root / "tiles.bin"},
                   hints={"data": {"sha256": hashlib.sha256(b"\0" * 64).hexdigest()}}, footprint=(24.0, -20.0, 24.1, -19.9))
    return root


def item(root: Path, family: str, asset: str, partition: str) -> dict:
    identifier = item_id_for(asset, partition)
    return json.loads((root / CATALOG_FOLDER / family / identifier / f"{identifier}.json").read_text())


def test_every_item_collection_and_the_catalog_pass_stac_validator(catalog):
    documents = sorted((catalog / CATALOG_FOLDER).rglob("*.json"))
    assert len(documents) == 1 + 7 + 7  # catalog, a collection per family, an item each
    results = {str(p.relative_to(catalog)): validate(p) for p in documents}
    assert all(r["valid_stac"] for r in results.values()), {p: r for p, r in results.items() if not r["valid_stac"]}
    root = pystac.Catalog.from_file(str(catalog / CATALOG_FOLDER / "catalog.json"))
    assert {c.id for c in root.get_collections()} == {"mapterhorn-cogs", "conus404-daily", "mining-regions", "raster-grids",
                                                      "mapterhorn-coverage", "mapterhorn-tarballs", "mining-training-tiles"}
    assert len(list(root.get_items(recursive=True))) == 7


def test_items_carry_the_extension_fields_their_assets_call_for(catalog):
    cog = item(catalog, "mapterhorn-cogs", "mapterhorn_cog", "swissalti.dem")
    dem = cog["assets"]["dem"]
    assert cog["properties"]["proj:code"] == "EPSG:25832" and dem["proj:shape"] == [32, 32]
    assert dem["proj:transform"] == [10.0, 0.0, 500_000.0, 0.0, -10.0, 5_600_000.0]
    assert dem["raster:bands"] == [{"data_type": "float32", "spatial_resolution": 10.0, "nodata": -9999, "unit": "m"}]
    assert dem["href"] == "../../../cogs/dem.tif" and (catalog / CATALOG_FOLDER / "mapterhorn-cogs" / item_id_for("mapterhorn_cog", "swissalti.dem") / dem["href"]).resolve().exists()
    left, bottom, right, top = cog["bbox"]
    assert 8.99 < left < right < 9.01 and 50.5 < bottom < top < 50.6  # EPSG:25832: 500 km E is 9 E (the zone's meridian), 5600 km N 50.5 N

    daily = item(catalog, "conus404-daily", "conus404_daily", "2020-07-01")
    zarr = daily["assets"]["zarr"]
    assert zarr["xarray:open_kwargs"] == {"engine": "zarr", "consolidated": False, "chunks": {}}
    assert zarr["raster:bands"][0]["name"] == "T2" and zarr["raster:bands"][0]["unit"] == "K"
    assert daily["properties"]["datetime"] == "2020-07-01T00:00:00Z" and daily["bbox"] == [10.0, 50.0, 11.0, 51.0]
    opened = xr.open_zarr((catalog / CATALOG_FOLDER / "conus404-daily" / daily["id"] / zarr["href"]).resolve(), **{k: v for k, v in zarr["xarray:open_kwargs"].items() if k != "engine"})
    assert "T2" in opened.data_vars and opened["T2"].attrs["units"] == "K"

    region = item(catalog, "mining-regions", "landsat_regions", "BWA|2020")
    assert region["id"] == "landsat_regions__BWA-2020" and region["properties"]["dagster:partition"] == "BWA|2020"
    assert region["properties"]["start_datetime"] == "2020-01-01T00:00:00Z" and region["properties"]["datetime"] is None
    assert [b.get("common_name") for b in region["assets"]["zarr"]["eo:bands"]] == ["blue", "green", "red", "nir", "swir16"]

    grid = item(catalog, "raster-grids", "resampled_square_1km", "dem")
    table = grid["assets"]["table"]
    assert table["table:row_count"] == 2 and table["table:primary_geometry"] == "geometry"
    assert [c["name"] for c in table["table:columns"]][:2] == ["cell_id", "value"] and grid["bbox"] == [10.0, 50.0, 11.0, 50.5]

    coverage = item(catalog, "mapterhorn-coverage", "mapterhorn_source_coverage", "swissalti")
    assert coverage["bbox"] == pytest.approx([10.0, 50.0, 11.0, 50.5], abs=1e-6)  # written in EPSG:3857, cataloged in WGS84

    tarball = item(catalog, "mapterhorn-tarballs", "mapterhorn_tarball", "swissalti")
    digest = hashlib.md5(b"tar bytes" * 100).hexdigest()
    assert tarball["assets"]["tarball"]["file:checksum"] == "d510" + digest and tarball["assets"]["tarball"]["file:size"] == 900
    assert tarball["geometry"] is None and "bbox" not in tarball and tarball["assets"]["md5"]["roles"] == ["metadata"]
    tiles = item(catalog, "mining-training-tiles", "mining_training_tiles", "BWA|2020")
    assert tiles["assets"]["data"]["file:checksum"] == "1220" + hashlib.sha256(b"\0" * 64).hexdigest()

    for document in (cog, daily, region, grid, coverage, tarball, tiles):
        via = [link for link in document["links"] if link["rel"] == "via"]
        assert via == [{"rel": "via", "href": dagster_asset_url(document["properties"]["dagster:asset_key"], document["properties"]["dagster:partition"]),
                        "type": "text/html", "title": via[0]["title"]}]
    assert item(catalog, "mining-regions", "landsat_regions", "BWA|2020")["links"][0]["href"].endswith("/assets/landsat_regions?partition=BWA%7C2020")


def test_concurrent_partitions_all_land_in_their_collection_and_rewrites_replace(tmp_path):
    root = tmp_path / "storage"
    write_daily_zarr(root / "daily.zarr", ["2020-07-01"])
    days = [f"2020-07-{d:02d}" for d in range(1, 13)]
    errors = []

    def catalog_day(text):
        try:
            catalog_output(UPath(root), "conus404_daily", text, {"zarr": root / "daily.zarr"}, times=day(text))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=catalog_day, args=(d,)) for d in days]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    catalog_output(UPath(root), "conus404_daily", "2020-07-05", {"zarr": root / "daily.zarr"}, times=day("2020-07-05"))  # a re-run
    collection = json.loads((root / CATALOG_FOLDER / "conus404-daily" / "collection.json").read_text())
    items = [link for link in collection["links"] if link["rel"] == "item"]
    assert len(items) == len(days) == len({link["href"] for link in items})
    assert collection["extent"]["temporal"]["interval"] == [["2020-07-01T00:00:00Z", "2020-07-12T00:00:00Z"]]
    assert validate(root / CATALOG_FOLDER / "conus404-daily" / "collection.json")["valid_stac"]
    assert not list((root / CATALOG_FOLDER).rglob("*.tmp*")) and not list((root / CATALOG_FOLDER).rglob("*.lock"))


def test_pystac_client_searches_the_catalog_served_by_rustac_by_bbox_and_datetime(tmp_path):
    root = tmp_path / "storage"
    write_daily_zarr(root / "west.zarr", ["2020-07-01"], bbox=(-105.0, 39.0, -104.0, 40.0))
    write_daily_zarr(root / "east.zarr", ["2020-07-01"], bbox=(-80.0, 35.0, -79.0, 36.0))
    for text in ("2020-07-01", "2020-07-02", "2020-07-03"):
        catalog_output(UPath(root), "conus404_daily", text, {"zarr": root / "west.zarr"}, times=day(text))
        catalog_output(UPath(root), "raster_tiles", text, {"tiles": root / "east.zarr"}, times=day(text))
    features = [item.to_dict() for item in pystac.Catalog.from_file(str(root / CATALOG_FOLDER / "catalog.json")).get_items(recursive=True)]
    served = tmp_path / "items.json"
    served.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with stac_api_server(served) as url:
        client = Client.open(url)
        west = client.search(bbox=[-106, 38, -103.5, 41], datetime="2020-07-02/2020-07-03")
        found = sorted(i.properties["dagster:partition"] for i in west.items())
        assert found == ["2020-07-02", "2020-07-03"]
        assert {i.collection_id for i in west.items()} == {"conus404-daily"}
        everything = client.search(bbox=[-110, 30, -70, 45], datetime="2020-07-01")
        assert sorted(i.id for i in everything.items()) == ["conus404_daily__2020-07-01", "raster_tiles__2020-07-01"]
        assert sorted(c.id for c in client.get_collections()) == ["conus404-daily", "raster-tiles"]


def test_a_metadata_asset_is_named_but_does_not_widen_the_footprint(tmp_path):
    """The mine polygons beside a region cover every country; the region's item keeps the region's footprint."""
    root = tmp_path / "storage"
    write_cog(root / "dem.tif")
    gpd.GeoDataFrame({"mine_id": ["far"]}, geometry=[shapely.box(100, 10, 101, 11)], crs=4326).to_parquet(root / "mines.parquet")
    path = catalog_output(UPath(root), "mapterhorn_cog", "a.b", {"dem": root / "dem.tif", "mines": root / "mines.parquet"},
                          hints={"mines": {"role": "metadata"}})
    document = json.loads(Path(path).read_text())
    assert document["assets"]["mines"]["roles"] == ["metadata"] and document["assets"]["mines"]["table:row_count"] == 1
    assert document["bbox"][2] < 20  # the COG's (near 8 deg E), not out to the mine at 101 deg E


def test_a_batch_writes_each_item_at_once_and_folds_the_collection_once_per_batch(tmp_path):
    """A ranged run's items: each file written as it comes, collection.json rewritten once per fold_every items and at
    close (not once per item), and the result the same as item by item: every item linked once, the extent their union."""
    root = tmp_path / "storage"
    for name in ("a", "b", "c"):
        write_cog(root / "cogs" / f"{name}.tif")
    batch = StacItemBatch(UPath(root), "mapterhorn_cog", fold_every=2)
    collection = root / CATALOG_FOLDER / "mapterhorn-cogs" / "collection.json"
    paths = [batch.add(f"src.{name}", {name: root / "cogs" / f"{name}.tif"}, hints={name: {"unit": "m"}}) for name in ("a", "b")]
    assert all(Path(p).exists() for p in paths) and collection.exists()  # folded after the second item
    batch.add("src.c", {"c": root / "cogs" / "c.tif"})
    linked = [link["href"] for link in json.loads(collection.read_text())["links"] if link["rel"] == "item"]
    assert len(linked) == 2  # the third waits for the next fold
    batch.add("src.a", {"a": root / "cogs" / "a.tif"})  # a re-run partition replaces its item, linked once
    batch.close()
    document = json.loads(collection.read_text())
    linked = [link["href"] for link in document["links"] if link["rel"] == "item"]
    assert sorted(linked) == sorted(f"./{item_id_for('mapterhorn_cog', f'src.{n}')}/{item_id_for('mapterhorn_cog', f'src.{n}')}.json" for n in "abc")
    items = [json.loads((collection.parent / href).read_text()) for href in linked]
    boxes = np.array([item["bbox"] for item in items])
    assert document["extent"]["spatial"]["bbox"][0] == [boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()]
    catalog = json.loads((root / CATALOG_FOLDER / "catalog.json").read_text())
    assert [link["href"] for link in catalog["links"] if link["rel"] == "child"] == ["./mapterhorn-cogs/collection.json"]


def test_outputs_on_an_s3_compatible_store_are_described_through_its_own_endpoint(tmp_path):
    """A deployment's MinIO (here moto): the describers open each output with the root's endpoint and keys
    (botocore's default is AWS, unreachable here), and no key is written into the item."""
    from gnt_assets_tests.s3_server import s3_server

    write_cog(tmp_path / "dem.tif")
    write_daily_zarr(tmp_path / "daily.zarr", ["2020-07-01"])
    with s3_server() as endpoint:
        root = UPath(endpoint.root, **endpoint.storage_options()) / "data"
        root.fs.put(str(tmp_path / "dem.tif"), f"{root.path}/dem.tif")
        root.fs.put(str(tmp_path / "daily.zarr"), f"{root.path}/daily.zarr", recursive=True)
        cog = catalog_output(root, "mapterhorn_cog", "swissalti.dem", {"dem": root / "dem.tif"})
        zarr_item = catalog_output(root, "conus404_daily", "2020-07-01", {"zarr": root / "daily.zarr"}, times=day("2020-07-01"))
        items = [json.loads(path.read_text()) for path in (cog, zarr_item)]
    assert items[0]["assets"]["dem"]["proj:code"] == "EPSG:25832"
    assert items[1]["assets"]["zarr"]["raster:bands"][0]["data_type"] == "float32"
    assert "testing" not in json.dumps(items)
