"""The local CONUS404 source on an object-store storage root (moto S3 on loopback)."""

from __future__ import annotations

from gnt_assets.conus404.definitions import resource_set
from gnt_assets.conus404.local import LocalConus404Source


def test_an_s3_root_reaches_the_configured_endpoint(s3_root, s3_endpoint):
    source = LocalConus404Source(root=str(s3_root / "sources" / "conus404"), endpoint_url=s3_endpoint.endpoint_url,
                                 start="2020-07-01", days=2, shape=[6, 8])
    hourly = source.open_hourly()  # without the endpoint, s3fs would go to AWS; the window runs to 00:00 of day 3
    assert hourly.sizes["time"] == 2 * 24 + 1 and float(hourly["T2"].isel(time=0).mean()) > 200
    stored = [p.name for p in (s3_root / "sources" / "conus404").iterdir()]
    assert len(stored) == 1 and stored[0].startswith("conus404-hourly-")


def test_the_local_profile_gives_the_source_the_storage_endpoint(monkeypatch):
    monkeypatch.setenv("GNT_STORAGE_ROOT", "s3://gnt/data")
    monkeypatch.setenv("GNT_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    source = resource_set("local")["conus404_source"]
    assert source.root == "s3://gnt/data/sources/conus404" and source.endpoint_url == "http://127.0.0.1:9000"
    assert source.root_path.storage_options["client_kwargs"] == {"endpoint_url": "http://127.0.0.1:9000"}
