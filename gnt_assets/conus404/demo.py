"""The conus404 pipeline's part of `make demo`."""

import dagster as dg


def run(instance: dg.DagsterInstance) -> None:
    """Materializes the conus404 demo partitions on the local backends."""
