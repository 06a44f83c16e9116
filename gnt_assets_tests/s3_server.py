"""An S3-protocol server on loopback (moto's server mode), for tests and local experiments.

The same s3fs / zarr / icechunk code that talks to AWS talks to it; only the
endpoint URL and dummy credentials differ.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import botocore.exceptions

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str
    bucket: str

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}"

    def storage_options(self) -> dict:
        return {
            "key": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "secret": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
        }


@contextlib.contextmanager
def s3_server(bucket: str = "gnt-test") -> Iterator[S3Endpoint]:
    """Start moto on 127.0.0.1 with a free port and one empty bucket; stop it on exit.

    moto runs in its own process, as a real object store would: GDAL's /vsis3/ client holds the
    GIL while it waits for a response, so a server thread inside the same interpreter could never answer."""
    import boto3

    from gnt_assets_tests.dagster_dev import free_port

    for name, value in DUMMY_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = S3Endpoint(endpoint_url=f"http://127.0.0.1:{port}", bucket=bucket)
        client = boto3.client("s3", endpoint_url=endpoint.endpoint_url, region_name="us-east-1")
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except botocore.exceptions.EndpointConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)
