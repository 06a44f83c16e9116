"""GNT Assets: five geospatial pipelines as one Dagster code location."""
