"""The mapterhorn pipeline's assets, checks, sensors and schedules."""

import dagster as dg

defs = dg.Definitions()
