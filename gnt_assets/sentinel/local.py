"""Local Sentinel-2 L2A stand-in: generated COG scenes (bands + SCL with clouds), their STAC items,
a demo AOI, and a loopback STAC API (``rustac serve``) searched with the same pystac-client code.

Scenes are deterministic (seeded by date), in UTM 10N at 10 m, named like Earth Search's
``sentinel-2-c1-l2a`` assets (red, green, blue, nir, scl) so every downstream step is the real one.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from pydantic import Field
from pyproj import Transformer
from rasterio.transform import from_origin
from scipy import ndimage
from upath import UPath

from gnt_assets.core.atomic import atomic_write_text
from gnt_assets.sentinel.resources import SentinelStacResource

COLLECTION = "sentinel-2-c1-l2a"
BANDS = ("red", "green", "blue", "nir")
SCENE_CRS = "EPSG:32610"
SCENE_RES = 10.0
# A few km around False Creek, Vancouver (the seed's test AOI city); lon/lat degrees.
DEMO_BBOX = (-123.1332, 49.2738, -123.1263, 49.2774)
DEMO_MONTHS = ("2024-06-01", "2024-07-01")
SCENES_PER_MONTH = 3
BASE_REFLECTANCE = {"red": 900, "green": 1100, "blue": 800, "nir": 2800}
SCL_CLASSES = {"cloud_high": 9, "cloud_medium": 8, "shadow": 3, "vegetation": 4, "bare": 5, "water": 6}


def _scene_grid(bbox: tuple[float, float, float, float], margin_m: float = 1500) -> tuple[float, float, int, int]:
    to_utm = Transformer.from_crs("EPSG:4326", SCENE_CRS, always_xy=True)
    xs, ys = to_utm.transform([bbox[0], bbox[2], bbox[0], bbox[2]], [bbox[1], bbox[1], bbox[3], bbox[3]])
    left = np.floor((min(xs) - margin_m) / 100) * 100
    top = np.ceil((max(ys) + margin_m) / 100) * 100
    width = int(np.ceil((max(xs) + margin_m - left) / SCENE_RES))
    height = int(np.ceil((top - (min(ys) - margin_m)) / SCENE_RES))
    return left, top, width, height


def _scene_arrays(seed: int, height: int, width: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    land = (np.sin(xx / 37.0) + np.cos(yy / 23.0)) > -0.6
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (height, width)), 3) * 150
    clouds = ndimage.gaussian_filter(rng.random((height, width)), 12)
    cloud_mask = clouds > np.quantile(clouds, 0.7)
    shadow = np.roll(cloud_mask, (8, 12), axis=(0, 1)) & ~cloud_mask
    scl = np.where(land, SCL_CLASSES["vegetation"], SCL_CLASSES["water"]).astype("uint8")
    scl[(xx + yy) % 97 < 20] = SCL_CLASSES["bare"]
    scl[shadow] = SCL_CLASSES["shadow"]
    scl[cloud_mask] = SCL_CLASSES["cloud_medium"]
    bands = {}
    for name in BANDS:
        value = BASE_REFLECTANCE[name] + texture + np.where(land, 0, -400) + 1000  # c1 offset: DN = (rho + 0.1) / 1e-4
        value = np.where(cloud_mask, 6000 + texture, value)
        bands[name] = np.clip(value, 1, 15000).astype("uint16")
    return bands, scl


def _write_cog(path: Path, array: np.ndarray, transform, nodata: int) -> None:
    profile = dict(driver="COG", width=array.shape[1], height=array.shape[0], count=1, dtype=array.dtype.name,
                   crs=SCENE_CRS, transform=transform, nodata=nodata, compress="deflate", blocksize=256)
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array, 1)
    tmp.replace(path)


def _item(scene_id: str, when: datetime, assets: dict[str, Path], transform, shape, bbox4326, cloud: float) -> dict:
    proj = {"proj:code": SCENE_CRS, "proj:shape": list(shape), "proj:transform": list(transform)[:6]}
    stac_assets = {}
    for name, path in assets.items():
        dtype = "uint8" if name == "scl" else "uint16"
        stac_assets[name] = {
            "href": path.resolve().as_uri(), "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"],
            "raster:bands": [{"data_type": dtype, "nodata": 0, "spatial_resolution": SCENE_RES}], **proj,
        }
    w, s, e, n = bbox4326
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": scene_id, "collection": COLLECTION,
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "eo:cloud_cover": cloud,
                       "platform": "sentinel-2a", "proj:code": SCENE_CRS},
        "links": [], "assets": stac_assets,
    }


def ensure_sample_scenes(root: Path, bbox: tuple[float, float, float, float] = DEMO_BBOX,
                         months: tuple[str, ...] = DEMO_MONTHS, scenes_per_month: int = SCENES_PER_MONTH) -> Path:
    """Generate (once) the scenes and an ItemCollection file; returns the ItemCollection path."""
    root = Path(root)
    items_path = root / "items.json"
    if items_path.exists():
        return items_path
    root.mkdir(parents=True, exist_ok=True)
    left, top, width, height = _scene_grid(bbox)
    transform = from_origin(left, top, SCENE_RES, SCENE_RES)
    to_4326 = Transformer.from_crs(SCENE_CRS, "EPSG:4326", always_xy=True)
    lons, lats = to_4326.transform([left, left + width * SCENE_RES] * 2, [top, top, top - height * SCENE_RES, top - height * SCENE_RES])
    bbox4326 = (min(lons), min(lats), max(lons), max(lats))
    features = []
    for month in months:
        first = datetime.fromisoformat(month).replace(tzinfo=UTC)
        for index in range(scenes_per_month):
            when = first + timedelta(days=3 + max(1, 27 // scenes_per_month) * index, hours=19, minutes=12)
            scene_id = f"S2A_10UDV_{when:%Y%m%d}_0_L2A"
            bands, scl = _scene_arrays(int(when.strftime("%Y%m%d")), height, width)
            assets = {}
            for name, array in {**bands, "scl": scl}.items():
                path = root / scene_id / f"{name}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_cog(path, array, transform, 0)
                assets[name] = path
            cloud = round(float(np.isin(scl, (3, 8, 9)).mean() * 100), 2)
            features.append(_item(scene_id, when, assets, transform, (height, width), bbox4326, cloud))
    atomic_write_text(UPath(items_path), json.dumps({"type": "FeatureCollection", "features": features}))
    return items_path


def ensure_demo_aoi(root: Path, bbox: tuple[float, float, float, float] = DEMO_BBOX) -> Path:
    """The demo AOI as a GeoPackage with layer 'aoi' (a slightly irregular polygon inside the bbox)."""
    import geopandas as gpd
    from shapely.geometry import Polygon

    path = Path(root) / "demo_aoi.gpkg"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        w, s, e, n = bbox
        shape = Polygon([(w, s), (e, s), (e, n - (n - s) / 3), (e - (e - w) / 3, n), (w, n)])
        tmp = path.with_suffix(".tmp.gpkg")
        gpd.GeoDataFrame({"name": ["demo"]}, geometry=[shape], crs="EPSG:4326").to_file(tmp, layer="aoi", driver="GPKG")
        tmp.replace(path)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rustac() -> str:
    return str(Path(sys.executable).with_name("rustac"))


@contextlib.contextmanager
def stac_api_server(*hrefs: Path, timeout_s: float = 30) -> Iterator[str]:
    """``rustac serve`` on a free loopback port with its in-memory backend (DuckDB off); yields the root URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [_rustac(), "serve", "--addr", f"127.0.0.1:{port}", "--use-duckdb", "false", "--create-collections",
         *(str(h) for h in hrefs)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/collections", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"rustac serve exited: {process.stderr.read().decode()[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rustac serve did not answer on {url} within {timeout_s} s") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LocalSentinelStac(SentinelStacResource):
    """Generated Sentinel-2-like COGs (under ``data_root``) served by ``rustac serve`` on loopback."""

    url: str = ""
    data_root: str = Field(default="./data/sentinel_source", description="Local folder of the generated scenes.")
    aws_unsigned: bool = False

    @contextlib.contextmanager
    def api_url(self) -> Iterator[str]:
        if self.url:
            yield self.url
            return
        with stac_api_server(ensure_sample_scenes(Path(self.data_root))) as url:
            yield url
