"""The code location benchmarks/conus404_record.py serves: the CONUS404 pipeline and the shared alert
sensor with the local profile, except a fast source (a tiny generated grid from the record's first day)."""

import os

import dagster as dg

from gnt_assets.conus404 import definitions as conus404
from gnt_assets.conus404.local import LocalConus404Source
from gnt_assets.profiles import resources_for_profile
from gnt_assets.sensors.check_failure_alerts import check_failure_alert_sensor

FAST_SOURCE = LocalConus404Source(root=os.environ["GNT_BENCH_SOURCE_ROOT"], start="1979-10-01",
                                  days=int(os.environ["GNT_BENCH_SOURCE_DAYS"]), shape=[8, 10])

defs = dg.Definitions.merge(
    conus404.defs,
    dg.Definitions(sensors=[check_failure_alert_sensor], resources={**resources_for_profile(), "conus404_source": FAST_SOURCE}),
)
