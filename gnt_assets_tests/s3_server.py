"""An S3-protocol server on loopback (moto's server mode), for tests and local experiments.

The same s3fs / zarr / icechunk code that talks to AWS talks to it; only the
endpoint URL and dummy credentials differ.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

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
    """Start moto on 127.0.0.1 with a free port and one empty bucket; stop it on exit."""
    import boto3
    from moto.server import ThreadedMotoServer

    for name, value in DUMMY_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = S3Endpoint(endpoint_url=f"http://{host}:{port}", bucket=bucket)
        boto3.client("s3", endpoint_url=endpoint.endpoint_url, region_name="us-east-1").create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()
