"""A code location with only the rasters pipeline (and the local resources), so the CLI test's
`dagster dev` and each launched run import the rasters code, not all five pipelines."""

import dagster as dg

from gnt_assets.profiles import resources_for_profile
from gnt_assets.rasters import definitions as rasters

defs = dg.Definitions.merge(rasters.defs, dg.Definitions(resources=resources_for_profile()))
