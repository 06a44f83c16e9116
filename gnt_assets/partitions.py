"""Every PartitionsDefinition of the code location, defined once (DESIGN section 4).

Dynamic dimensions are filled only by sensors (or the UI): a new country in the
polygon file, a raster dropped in the watched folder, a grid cell of the AOI, a
line in a Mapterhorn file list.
"""

import dagster as dg

# Mining: country x year. Landsat annual composites start in 1984.
mining_country = dg.DynamicPartitionsDefinition(name="mining_country")
mining_year = dg.TimeWindowPartitionsDefinition(start="1984", cron_schedule="0 0 1 1 *", fmt="%Y")
mining_country_year = dg.MultiPartitionsDefinition({"country": mining_country, "year": mining_year})

# CONUS404: one partition per day of the published record (end is exclusive).
conus404_day = dg.DailyPartitionsDefinition(start_date="1979-10-01", end_date="2022-10-01")

# Rasters: one partition per registered raster.
raster_sources = dg.DynamicPartitionsDefinition(name="raster_sources")

# Sentinel-2: month x grid cell. Sentinel-2 L2A is global from 2017.
sentinel_month = dg.MonthlyPartitionsDefinition(start_date="2017-01-01")
sentinel_chunk = dg.DynamicPartitionsDefinition(name="sentinel_chunk")
sentinel_month_chunk = dg.MultiPartitionsDefinition({"month": sentinel_month, "chunk": sentinel_chunk})

# Mapterhorn: one partition per source file, key "<source>.<file stem>".
mapterhorn_files = dg.DynamicPartitionsDefinition(name="mapterhorn_files")

# Mapterhorn: one partition per source (the merge, tarball and report).
mapterhorn_sources = dg.DynamicPartitionsDefinition(name="mapterhorn_sources")
