"""A small, deterministic stand-in for the CONUS404 hourly zarr store.

Same variable names, units and attributes, the same Lambert conformal ``crs``
variable, ``time`` hourly and dims ``(time, y, x)`` with one chunk per hour, on
a coarse grid that spans the real domain. Each hour's values depend only on
its timestamp, so any window reproduces the same numbers. ``faults`` corrupt
chosen days the ways real sources go wrong (a missing hour, an all-NaN field,
impossible temperatures), for the tests and the demo.

The second half runs the real Planetary Computer path on loopback: azurite
holding such a store in an Azure container, and one HTTP server answering as
the STAC API (collection ``conus404`` with its ``zarr-abfs`` asset) and as the
SAS token endpoint, issuing container SAS tokens azurite verifies.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import xarray as xr
from pydantic import Field
from upath import UPath

from gnt_assets.conus404.aggregation import RECORD_END
from gnt_assets.conus404.resources import Conus404Source
from gnt_assets.conus404.variables import CATALOG
from gnt_assets.core.loopback import serving
from gnt_assets.resources.storage import s3_options

# WRF's CONUS404 projection (cen_lat 39.100006, cen_lon -97.9, true latitudes 30/50, sphere R=6370 km).
CRS_ATTRS = {
    "grid_mapping_name": "lambert_conformal_conic",
    "standard_parallel": [30.0, 50.0],
    "longitude_of_central_meridian": -97.9,
    "latitude_of_projection_origin": 39.100006,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "earth_radius": 6370000.0,
}
FULL_SHAPE = (1015, 1367)  # south_north, west_east at 4 km
FULL_SPACING = 4000.0
FAULTS = ("missing_hour", "nan_field", "impossible_temperature", "bucket_reset", "few_bad_cells")
LOCAL_SAMPLE_START = "2020-07-01"
LOCAL_SAMPLE_DAYS = 21
RESET_HOUR = 9  # bucket_reset: ACSWDNB restarts from 0 at 09:00 of the day (as at a water-year restart)
BAD_CELLS = 3  # few_bad_cells: this many cells with impossible T2 and supersaturated TD2 all day


def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre x/y (metres) of a ``shape`` grid spanning the real 1015 x 1367 domain."""
    ny, nx = shape
    width, height = FULL_SHAPE[1] * FULL_SPACING, FULL_SHAPE[0] * FULL_SPACING
    dx, dy = width / nx, height / ny
    x = -width / 2 + dx * (np.arange(nx) + 0.5)
    y = -height / 2 + dy * (np.arange(ny) + 0.5)
    return x, y


def hour_fields(time: pd.Timestamp, lat: np.ndarray, lon: np.ndarray, elevation: np.ndarray) -> dict[str, np.ndarray]:
    """Plausible instantaneous and hourly fields for one timestamp (seeded by the timestamp)."""
    rng = np.random.default_rng(int(time.value // 3_600_000_000_000) & 0xFFFFFFFF)
    shape = lat.shape
    day_of_year = time.dayofyear
    local_hour = (time.hour + lon / 15.0) % 24
    season = np.cos(2 * np.pi * (day_of_year - 200) / 365.25)
    t2 = 288.0 - 0.6 * (lat - 38) + 10 * season - 0.0065 * elevation + 6 * np.sin(2 * np.pi * (local_hour - 9) / 24)
    t2 = t2 + rng.normal(0, 0.5, shape)
    td2 = t2 - 3.0 - 4.0 * rng.random(shape)
    # WRF's 2 m diagnostics exceed 100 % humidity in fog and over wet ground: ~1 % of cells, fixed in space,
    # keep a dewpoint up to 0.6 K above the temperature every hour (real; the seed's rule allows 1 K)
    fog = (np.floor(np.abs(lat * 37.0 + lon * 11.0) * 13.0) % 97) == 0
    td2 = np.where(fog, t2 + 0.6 * rng.random(shape), td2)
    psfc = 101325.0 * np.exp(-elevation / 8000.0)
    e = 611.2 * np.exp(17.67 * (td2 - 273.15) / (td2 - 29.65))
    q2 = 0.622 * e / (psfc - 0.378 * e)
    u10 = 3 + 2 * np.sin(lat / 5 + time.hour / 4) + rng.normal(0, 1, shape)
    v10 = 1 + 2 * np.cos(lon / 7 + time.hour / 5) + rng.normal(0, 1, shape)
    sun = np.clip(np.sin(np.pi * (local_hour - 6) / 12), 0, None)
    swdown = 900 * sun * (0.75 + 0.25 * season)
    storm = np.clip(np.sin(lon / 3 + day_of_year / 2) * np.cos(lat / 2 + time.hour / 6) + rng.normal(0, 0.2, shape), 0, None)
    rain = np.where(storm > 0.6, 4.0 * (storm - 0.6), 0.0)
    lai = np.clip(1.5 + 2.5 * (0.5 + 0.5 * season) * np.cos(np.radians(lat - 35)), 0, 6)
    return {
        "T2": t2, "TD2": td2, "Q2": q2, "PSFC": psfc, "U10": u10, "V10": v10, "LAI": lai,
        "SWDOWN": swdown, "ACRAINLSM": rain * 0.98, "PREC_ACC_NC": rain,
        "Z": elevation + 25.0 + 0.01 * (t2 - 288.0),  # the lowest mass level, ~25 m above ground, breathing with T
    }


def generate_hourly(
    start: date, days: int, shape: tuple[int, int] = (36, 48), faults: dict[str, str] | None = None
) -> xr.Dataset:
    """The hourly dataset from 00:00 of ``start`` to 00:00 after ``days`` days (inclusive)."""
    faults = faults or {}
    for day, fault in faults.items():
        if fault not in FAULTS:
            raise ValueError(f"conus404 local source: fault {fault!r} for {day} is not one of {FAULTS}")
    x, y = grid(shape)
    xx, yy = np.meshgrid(x, y)
    lon, lat = pyproj.Transformer.from_crs(pyproj.CRS.from_cf(CRS_ATTRS), "EPSG:4326", always_xy=True).transform(xx, yy)
    elevation = 2500 * np.exp(-(((lon + 110) / 8) ** 2)) + 300 * (1 + np.sin(lat / 3))
    origin = datetime(start.year, start.month, start.day)
    times = [pd.Timestamp(origin + timedelta(hours=h)) for h in range(days * 24 + 1)]
    times = [t for t in times if not (faults.get(str(t.date())) == "missing_hour" and t.hour == 12)]
    times = [t for t in times if t <= RECORD_END]  # the real record ends at 2022-09-30T23:00
    stacks: dict[str, list[np.ndarray]] = {name: [] for name in CATALOG}
    bucket = np.zeros(shape)
    for t in times:
        fields = hour_fields(t, lat, lon, elevation)
        fault = faults.get(str(t.date()))
        if fault == "nan_field":
            fields["Q2"] = np.full(shape, np.nan)
        elif fault == "impossible_temperature" and t.hour == 15:
            fields["T2"] = fields["T2"] + 120.0
        elif fault == "few_bad_cells":
            for flat in np.linspace(0, lat.size - 1, BAD_CELLS).astype(int):
                row, col = np.unravel_index(flat, shape)
                fields["T2"][row, col] = 345.0
                fields["TD2"][row, col] = 350.0
        if fault == "bucket_reset" and t.hour == RESET_HOUR:
            bucket = np.zeros(shape)
        bucket = bucket + fields["SWDOWN"] * 3600.0
        fields["ACSWDNB"] = bucket
        for name in CATALOG:
            stacks[name].append(fields[name].astype(np.float32))
    data_vars = {
        name: (("time", "y", "x"), np.stack(stacks[name]), {
            "units": v.units, "description": v.description, "grid_mapping": "crs",
            **({"integration_length": "accumulated over prior 60 minutes"} if v.kind == "hourly_accumulation" else {}),
        })
        for name, v in CATALOG.items()
    }
    data_vars["crs"] = ((), np.int32(0), dict(CRS_ATTRS, spatial_ref=pyproj.CRS.from_cf(CRS_ATTRS).to_wkt()))
    return xr.Dataset(
        data_vars,
        coords={
            "time": ("time", pd.DatetimeIndex(times).values),
            "x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate"}),
            "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"}),
            "lat": (("y", "x"), lat.astype(np.float32), {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon.astype(np.float32), {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={"title": "CONUS404 hourly (local generated stand-in)", "source": "gnt_assets.conus404.local"},
    )


def store_name(start: date, days: int, shape: tuple[int, int], faults: dict[str, str]) -> str:
    digest = hashlib.sha1(json.dumps([str(start), days, list(shape), sorted(faults.items())]).encode()).hexdigest()[:12]
    return f"conus404-hourly-{digest}.zarr"


def ensure_hourly_store(
    root: UPath, start: date, days: int, shape: tuple[int, int] = (36, 48), faults: dict[str, str] | None = None
) -> UPath:
    """The generated store under ``root``, written once (zarr v2 like the real one, one chunk per hour)."""
    faults = dict(faults or {})
    path = root / store_name(start, days, shape, faults)
    if (path / ".zmetadata").exists():
        return path
    root.mkdir(parents=True, exist_ok=True)
    dataset = generate_hourly(start, days, shape, faults)
    encoding = {name: {"chunks": (1, *shape)} for name in CATALOG}
    if path.protocol not in ("", "file", "local"):
        # No rename on object stores: written in place, complete once ``.zmetadata`` (written last) is there;
        # a half-written store lacks it and is rewritten whole on the next call.
        dataset.to_zarr(path.fs.get_mapper(path.path), mode="w", zarr_format=2, consolidated=True, encoding=encoding)
        return path
    temp = root / f".tmp-{path.name}"
    if temp.exists():
        temp.fs.rm(temp.path, recursive=True)
    dataset.to_zarr(temp.path, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    if path.exists():  # another process won the race; its store is identical
        temp.fs.rm(temp.path, recursive=True)
    else:
        temp.fs.mv(temp.path, path.path, recursive=True)
    return path


# --- The Planetary Computer path on loopback: azurite (Azure blob protocol) + a STAC API and SAS token endpoint.

AZURITE_ACCOUNT = "devstoreaccount1"
# The well-known azurite development key (public, documented by Microsoft; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection_string(blob_endpoint: str, *, with_key: bool = True) -> str:
    parts = ["DefaultEndpointsProtocol=http", f"AccountName={AZURITE_ACCOUNT}", f"BlobEndpoint={blob_endpoint}"]
    if with_key:
        parts.insert(2, f"AccountKey={AZURITE_KEY}")
    return ";".join(parts) + ";"


def azurite_binary() -> Path | None:
    """azurite-blob from ``make node-tools`` (``.gnt/node``), if installed."""
    path = Path(__file__).resolve().parents[2] / ".gnt" / "node" / "node_modules" / ".bin" / "azurite-blob"
    return path if path.exists() else None


@contextlib.contextmanager
def azurite_blob(location: Path) -> Iterator[str]:
    """Run azurite's blob service on a free loopback port; yields its blob endpoint URL."""
    binary = azurite_binary()
    if binary is None:
        raise FileNotFoundError("azurite-blob is not installed; run `make node-tools`")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(binary), "--skipApiVersionCheck", "--disableTelemetry", "--loose", "--blobHost", "127.0.0.1",
         "--blobPort", str(port), "--location", str(location)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if process.poll() is not None:
                raise RuntimeError(f"azurite-blob exited with {process.returncode}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def upload_hourly(blob_endpoint: str, container: str, name: str, dataset: xr.Dataset, staging: Path) -> str:
    """Put ``dataset`` into azurite laid out as the real store is (zarr v2, consolidated, one chunk per hour).

    Written locally, then uploaded with adlfs: consolidating straight on adlfs
    lists the store through adlfs' directory cache and misses the new arrays.
    """
    import adlfs
    from azure.storage.blob import BlobServiceClient

    connection = azurite_connection_string(blob_endpoint)
    with contextlib.suppress(Exception):
        BlobServiceClient.from_connection_string(connection).create_container(container)
    shape = (dataset.sizes["y"], dataset.sizes["x"])
    encoding = {n: {"chunks": (1, *shape)} for n in CATALOG if n in dataset}
    local = staging / name
    dataset.to_zarr(str(local), mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    adlfs.AzureBlobFileSystem(connection_string=connection).put(str(local), f"{container}/{name}", recursive=True)
    return f"abfs://{container}/{name}"


def container_sas(container: str, hours: float = 1.0) -> tuple[str, str]:
    """A read/list SAS token for ``container`` signed with the azurite key, and its expiry."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    expiry = datetime.now(UTC) + timedelta(hours=hours)
    token = generate_container_sas(AZURITE_ACCOUNT, container, account_key=AZURITE_KEY,
                                   permission=ContainerSasPermissions(read=True, list=True), expiry=expiry)
    return token, expiry.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class StacBehaviour:
    """How the loopback STAC/SAS server answers; tests flip these to simulate the service failing."""

    token_status: int = 200  # 403: the SAS token request is refused
    token: str | None = None  # override the issued token (e.g. a forged one azurite rejects)
    slow_collection_requests: int = 0  # this many collection requests stall past the client timeout
    stall_seconds: float = 3.0
    requests: list[str] = field(default_factory=list)


def collection_document(base: str, href: str, blob_endpoint: str) -> dict:
    """The ``conus404`` collection as the Planetary Computer publishes it, pointing at azurite."""
    return {
        "type": "Collection", "stac_version": "1.0.0", "id": "conus404",
        "description": "CONUS404 hourly (loopback copy)", "license": "CC0-1.0",
        "extent": {"spatial": {"bbox": [[-139, 17, -57, 58]]},
                   "temporal": {"interval": [["1979-10-01T00:00:00Z", "2022-09-30T23:00:00Z"]]}},
        "links": [{"rel": "self", "href": f"{base}/collections/conus404"}, {"rel": "root", "href": f"{base}/"}],
        "stac_extensions": ["https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json"],
        "assets": {"zarr-abfs": {
            "href": href, "type": "application/vnd+zarr", "roles": ["data", "zarr", "abfs"],
            "xarray:storage_options": {"account_name": AZURITE_ACCOUNT,
                                       "connection_string": azurite_connection_string(blob_endpoint, with_key=False)},
            "xarray:open_kwargs": {"consolidated": True},
        }},
    }


@contextlib.contextmanager
def planetary_computer_api(href: str, blob_endpoint: str, behaviour: StacBehaviour) -> Iterator[str]:
    """A STAC API (landing page + ``/collections/conus404``) and a SAS token endpoint on loopback.

    Yields the base URL; the STAC API is at ``{base}/api/stac/v1`` and the token
    endpoint at ``{base}/api/sas/v1/token`` (``PC_SDK_SAS_URL``), as on the real service.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            behaviour.requests.append(self.path)
            stac = f"{base}/api/stac/v1"
            if self.path.rstrip("/") == "/api/stac/v1":
                body = {"type": "Catalog", "id": "loopback-pc", "stac_version": "1.0.0", "description": "loopback",
                        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/collections"],
                        "links": [{"rel": "self", "href": f"{stac}/"}, {"rel": "root", "href": f"{stac}/"},
                                  {"rel": "data", "href": f"{stac}/collections"}]}
                return self._json(200, body)
            if self.path.startswith("/api/stac/v1/collections/conus404"):
                if behaviour.slow_collection_requests > 0:
                    behaviour.slow_collection_requests -= 1
                    time.sleep(behaviour.stall_seconds)
                return self._json(200, collection_document(stac, href, blob_endpoint))
            if self.path.startswith("/api/sas/v1/token/"):
                if behaviour.token_status != 200:
                    return self._json(behaviour.token_status, {"message": "token request refused"})
                container = self.path.rstrip("/").split("/")[-1]
                token, expiry = container_sas(container)
                return self._json(200, {"msft:expiry": expiry, "token": behaviour.token or token})
            self._json(404, {"message": f"no route {self.path}"})

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

    with serving(Handler, "planetary-computer-token-server") as url:
        yield url


class LocalConus404Source(Conus404Source):
    """A generated hourly zarr (real names, units, projection) under ``root``, covering ``days`` from ``start``."""

    root: str = Field(description="Folder for the generated store (below the storage root).")
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint of an s3:// root (GNT_S3_ENDPOINT_URL); credentials as s3fs reads them (AWS_*)."
    )
    start: str = Field(default=LOCAL_SAMPLE_START, description="First day of the source window.")
    days: int = Field(default=LOCAL_SAMPLE_DAYS, description="Days in the source window; a day outside it fails saying so.")
    shape: list[int] = Field(default=[60, 80], description="Grid (y, x) spanning the real 1015 x 1367 domain.")
    faults: dict[str, str] = Field(
        default_factory=dict,
        description="Day -> missing_hour | nan_field | impossible_temperature | bucket_reset | few_bad_cells (corrupted source days).",
    )
    transient_failures: dict[str, int] = Field(
        default_factory=dict, description="Day -> how many reads time out before one succeeds (exercises the retry policy)."
    )

    @property
    def root_path(self) -> UPath:
        """The root with its endpoint, so an object-store root reaches the configured server, not AWS."""
        return UPath(self.root, **s3_options(self.endpoint_url, None, None)) if "://" in self.root else UPath(self.root)

    def open_hourly(self) -> xr.Dataset:
        path = ensure_hourly_store(
            self.root_path, date.fromisoformat(self.start), self.days, tuple(self.shape), self.faults
        )
        return xr.open_zarr(path.path if path.protocol in ("", "file", "local") else path.fs.get_mapper(path.path),
                            consolidated=True, chunks=None)

    def window_hint(self) -> str:
        first, last = date.fromisoformat(self.start), date.fromisoformat(self.start) + timedelta(days=self.days - 1)
        return (f". The local profile's generated sample covers {first} .. {last} (hourly); extend it with the "
                f"conus404_source resource's `start` and `days` (LocalConus404Source), or use GNT_PROFILE=cloud")

    def read_attempt(self, day: date) -> None:
        """Counts reads of ``day`` and times out the first ``transient_failures[day]`` of them."""
        allowed = self.transient_failures.get(str(day), 0)
        if not allowed:
            return
        marker = self.root_path / ".attempts" / str(day)
        marker.parent.mkdir(parents=True, exist_ok=True)
        attempts = int(marker.read_text()) if marker.exists() else 0
        marker.write_text(str(attempts + 1))
        if attempts < allowed:
            raise TimeoutError(f"conus404 local source: read of {day} timed out (simulated, attempt {attempts + 1})")
