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
import urllib.parse
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
from gnt_assets.core.loopback import FileHandler, serving
from gnt_assets.sentinel.resources import SentinelStacResource

COLLECTION = "sentinel-2-c1-l2a"
PC_COLLECTION = "sentinel-2-l2a"
BANDS = ("red", "green", "blue", "nir")
PC_ASSETS = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08", "scl": "SCL"}
BASELINE_CHANGE = datetime(2022, 1, 25, tzinfo=UTC)  # processing baseline 04.00: L2A DN gain a +1000 offset
CATALOG_VERSION = "2"  # bump when the generated scenes or items change: older sample folders are rebuilt
SCENE_CRS = "EPSG:32610"
SCENE_RES = 10.0
# A few km around False Creek, Vancouver (the seed's test AOI city); lon/lat degrees.
DEMO_BBOX = (-123.1332, 49.2738, -123.1263, 49.2774)
DEMO_MONTHS = ("2024-06-01", "2024-07-01")
PRE_BASELINE_MONTH = "2021-12-01"  # scenes before the baseline change (Planetary Computer DN without offset)
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


def scene_item(scene_id: str, when: datetime, assets: dict[str, Path | str], transform, shape, bbox4326, cloud: float,
               collection: str = COLLECTION, crs: str = SCENE_CRS) -> dict:
    """A scene's STAC item; an asset is a local file (a file:// href) or a URL (e.g. from ``file_server``).
    Earth Search C1 items state scale and offset in raster:bands; Planetary Computer's do not (their DN
    follow the processing baseline, stated as s2:processing_baseline)."""
    proj = {"proj:code": crs, "proj:shape": list(shape), "proj:transform": list(transform)[:6]}
    stac_assets = {}
    for name, path in assets.items():
        dtype = "uint8" if name in ("scl", "SCL") else "uint16"
        band = {"data_type": dtype, "nodata": 0, "spatial_resolution": SCENE_RES}
        if collection == COLLECTION and dtype == "uint16":
            band.update(scale=0.0001, offset=-0.1)
        stac_assets[name] = {
            "href": path if isinstance(path, str) else path.resolve().as_uri(), "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"],
            "raster:bands": [band], **proj,
        }
    baseline = "05.10" if when >= BASELINE_CHANGE else "03.01"
    w, s, e, n = bbox4326
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": scene_id, "collection": collection,
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "eo:cloud_cover": cloud,
                       "platform": "sentinel-2a", "proj:code": crs, "s2:processing_baseline": baseline},
        "links": [], "assets": stac_assets,
    }


def ensure_sample_scenes(root: Path, bbox: tuple[float, float, float, float] = DEMO_BBOX,
                         months: tuple[str, ...] = (PRE_BASELINE_MONTH, *DEMO_MONTHS),
                         scenes_per_month: int = SCENES_PER_MONTH) -> Path:
    """Generate (once) the scenes as both providers serve them; returns the Earth Search ItemCollection
    (``items.json``; Planetary Computer's is ``items_pc.json`` beside it, see ``sample_item_files``).

    The same surface is written twice: Earth Search C1 DN (+1000 offset, raster:bands scale/offset) and
    Planetary Computer DN (+1000 only from baseline 04.00 on, no offset in raster:bands), as the real
    providers differ."""
    root = Path(root)
    items_path, pc_path, version = root / "items.json", root / "items_pc.json", root / "catalog_version"
    if items_path.exists() and pc_path.exists() and version.exists() and version.read_text() == CATALOG_VERSION:
        return items_path
    root.mkdir(parents=True, exist_ok=True)
    left, top, width, height = _scene_grid(bbox)
    transform = from_origin(left, top, SCENE_RES, SCENE_RES)
    to_4326 = Transformer.from_crs(SCENE_CRS, "EPSG:4326", always_xy=True)
    lons, lats = to_4326.transform([left, left + width * SCENE_RES] * 2, [top, top, top - height * SCENE_RES, top - height * SCENE_RES])
    bbox4326 = (min(lons), min(lats), max(lons), max(lats))
    features, pc_features = [], []
    for month in months:
        first = datetime.fromisoformat(month).replace(tzinfo=UTC)
        for index in range(scenes_per_month):
            when = first + timedelta(days=3 + max(1, 27 // scenes_per_month) * index, hours=19, minutes=12)
            scene_id = f"S2A_10UDV_{when:%Y%m%d}_0_L2A"
            bands, scl = _scene_arrays(int(when.strftime("%Y%m%d")), height, width)
            assets, pc_assets = {}, {}
            for name, array in {**bands, "scl": scl}.items():
                path = root / scene_id / f"{name}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_cog(path, array, transform, 0)
                assets[name] = path
                if when < BASELINE_CHANGE and name != "scl":  # before 04.00: no +1000 offset in the DN
                    path = root / "pc" / scene_id / f"{PC_ASSETS[name]}.tif"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _write_cog(path, np.where(array > 0, np.clip(array.astype(np.int32) - 1000, 1, None), 0).astype("uint16"),
                               transform, 0)
                pc_assets[PC_ASSETS[name]] = path  # from 04.00 on the same DN as Earth Search's C1
            cloud = round(float(np.isin(scl, (3, 8, 9)).mean() * 100), 2)
            features.append(scene_item(scene_id, when, assets, transform, (height, width), bbox4326, cloud))
            pc_features.append(scene_item(scene_id, when, pc_assets, transform, (height, width), bbox4326, cloud, PC_COLLECTION))
    atomic_write_text(UPath(pc_path), json.dumps({"type": "FeatureCollection", "features": pc_features}))
    atomic_write_text(UPath(items_path), json.dumps({"type": "FeatureCollection", "features": features}))
    atomic_write_text(UPath(version), CATALOG_VERSION)
    return items_path


def sample_item_files(root: Path) -> list[Path]:
    """Both providers' ItemCollections (generated first if needed), for one STAC server."""
    items = ensure_sample_scenes(Path(root))
    return [items, items.with_name("items_pc.json")]


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


def _file_handler(root: Path) -> type[FileHandler]:
    class Handler(FileHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: GDAL reuses its connections

        def _serve(self, *, head: bool) -> None:
            path = (root / urllib.parse.unquote(self.path.split("?")[0]).lstrip("/")).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                self.send_error(404)
                return
            size = path.stat().st_size
            start, end = 0, size - 1
            ranged = self.headers.get("Range", "").startswith("bytes=") and "," not in self.headers["Range"]
            if ranged:
                first, _, last = self.headers["Range"][6:].partition("-")
                start, end = (int(first), min(int(last), size - 1) if last else size - 1) if first else (max(0, size - int(last)), size - 1)
            self.send_response(206 if ranged else 200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Content-Length", str(end - start + 1))
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if not head:
                with path.open("rb") as file:
                    file.seek(start)
                    self.wfile.write(file.read(end - start + 1))

    return Handler


@contextlib.contextmanager
def file_server(root: Path) -> Iterator[str]:
    """The files under ``root`` over HTTP on loopback, with single byte ranges (what GDAL's /vsicurl/ reads a COG
    with), so scenes are read as from a cloud bucket; yields the base URL."""
    with serving(_file_handler(Path(root).resolve()), "sentinel-cogs") as url:
        yield url


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
        with stac_api_server(*sample_item_files(Path(self.data_root))) as url:
            yield url


class LocalPlanetaryComputerStac(LocalSentinelStac):
    """The same local server, searched as Planetary Computer's ``sentinel-2-l2a`` (its asset names, its DN)."""

    collection: str = PC_COLLECTION
    band_assets: dict[str, str] = Field(default_factory=lambda: {b: PC_ASSETS[b] for b in BANDS})
    scl_asset: str = "SCL"
