"""The gnt_assets code location: five pipeline groups, shared sensors, resources by GNT_PROFILE."""

import dagster as dg

from gnt_assets.conus404.definitions import defs as conus404
from gnt_assets.mapterhorn.definitions import defs as mapterhorn
from gnt_assets.mining.definitions import defs as mining
from gnt_assets.rasters.definitions import defs as rasters
from gnt_assets.resources import resources_for_profile
from gnt_assets.sensors.check_failure_alerts import check_failure_alert_sensor
from gnt_assets.sentinel.definitions import defs as sentinel

shared = dg.Definitions(sensors=[check_failure_alert_sensor], resources=resources_for_profile())

defs = dg.Definitions.merge(shared, mining, conus404, rasters, sentinel, mapterhorn)
