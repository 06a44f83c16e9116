"""The mapterhorn pipeline's part of `make demo`."""

import dagster as dg


def run(instance: dg.DagsterInstance) -> None:
    """Materializes the mapterhorn demo partitions on the local backends."""
