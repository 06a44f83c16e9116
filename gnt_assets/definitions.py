"""The gnt_assets code location: five pipeline groups, shared sensors, resources by GNT_PROFILE."""

import dagster as dg

from gnt_assets.conus404 import definitions as conus404
from gnt_assets.jobs import reference_data_on_dask
from gnt_assets.mapterhorn import definitions as mapterhorn
from gnt_assets.mining import definitions as mining
from gnt_assets.profiles import resources_for_profile
from gnt_assets.rasters import definitions as rasters
from gnt_assets.sensors.check_failure_alerts import check_failure_alert_sensor
from gnt_assets.sentinel import definitions as sentinel

# Dagster loads exactly one Definitions object from this module: the merge below.
defs = dg.Definitions.merge(
    dg.Definitions(sensors=[check_failure_alert_sensor], jobs=[reference_data_on_dask], resources=resources_for_profile()),
    mining.defs,
    conus404.defs,
    rasters.defs,
    sentinel.defs,
    mapterhorn.defs,
)
