"""GNT Assets: five geospatial pipelines as one Dagster code location."""

import warnings

# Dagster features this project uses knowingly, each announced as beta or preview on every use (hundreds of
# lines per hour in `make dev`): checks on partitions, backfill policies, the country-year to country partition
# mapping and the assets' source-code links. Filtered once here, by message, so any other notice still shows.
KNOWN_DAGSTER_NOTICES = (
    r"Specifying a partitions_def on an AssetCheckSpec is currently in preview",
    r"Parameter `backfill_policy` of function `asset` is currently in beta",
    r"Class `MultiToSingleDimensionPartitionMapping` is currently in beta",
    r"Function `(with_source_code_references|link_code_references_to_git)` is currently in beta",
    r"Class `(LocalFileCodeReference|UrlCodeReference|CodeReferencesMetadataValue|AnchorBasedFilePathMapping)` is currently in beta",
)
for _message in KNOWN_DAGSTER_NOTICES:
    warnings.filterwarnings("ignore", message=_message)
