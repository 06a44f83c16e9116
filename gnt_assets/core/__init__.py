"""Pure domain code shared by the pipelines. Nothing here imports Dagster."""
