"""Mapterhorn sensors: new file-list lines become partitions and runs; finished sources get merged."""


import json

import dagster as dg

from gnt_assets.mapterhorn.catalog import list_files, sources, unusable_sources
from gnt_assets.mapterhorn.chain import source_fingerprint
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.partitions import mapterhorn_files
from gnt_assets.partitions import mapterhorn_sources as source_partitions

FILE_ASSETS = ["mapterhorn_download", "mapterhorn_unpacked", "mapterhorn_georeferenced", "mapterhorn_cog", "mapterhorn_bounds", "mapterhorn_coverage"]
SOURCE_ASSETS = ["mapterhorn_bounds_csv", "mapterhorn_source_coverage", "mapterhorn_tarball", "mapterhorn_report"]

mapterhorn_file_job = dg.define_asset_job("mapterhorn_file_job", selection=dg.AssetSelection.assets(*FILE_ASSETS), partitions_def=mapterhorn_files)
mapterhorn_source_job = dg.define_asset_job("mapterhorn_source_job", selection=dg.AssetSelection.assets(*SOURCE_ASSETS), partitions_def=source_partitions)


@dg.sensor(job=mapterhorn_file_job, minimum_interval_seconds=60)
def mapterhorn_file_list_sensor(context: dg.SensorEvaluationContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.SensorResult:
    """Adds a partition per new file_list.txt line and requests its chain; removed lines are reported, not deleted."""
    catalog = mapterhorn_sources.catalog()
    if skipped := unusable_sources(catalog):
        context.log.warning(f"source folders skipped, rename them to letters, digits, '_' or '-': {', '.join(skipped)}")
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = {entry.key: entry.url for source in sources(catalog) for entry in list_files(catalog, source)}
    new = [key for key in current if key not in seen]
    removed = sorted(set(seen) - set(current))
    changed = sorted(key for key in current if key in seen and seen[key] != current[key])
    if changed:
        context.log.warning(f"file-list lines whose key now names another URL (their download step will refuse until cleared): {', '.join(changed)}")
    if removed:
        context.log.warning(f"lines removed from file lists; their partitions and outputs are kept: {', '.join(removed)}")
    # Shown on the file's download partition in the UI, so a removal is visible where the file's history is.
    removals = [
        dg.AssetObservation(asset_key="mapterhorn_download", partition=key, metadata={"removed_from_file_list": seen[key]})
        for key in removed
    ] + [
        dg.AssetObservation(asset_key="mapterhorn_download", partition=key, metadata={"url_changed_from": seen[key], "url_changed_to": current[key]})
        for key in changed
    ]
    known_sources = set(context.instance.get_dynamic_partitions(source_partitions.name))
    new_sources = sorted({key.split(".", 1)[0] for key in current} - known_sources)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=key, run_key=f"{key}@{current[key]}") for key in new],
        dynamic_partitions_requests=[
            mapterhorn_files.build_add_request(new),
            source_partitions.build_add_request(new_sources),
        ],
        asset_events=removals,
        cursor=json.dumps(current, sort_keys=True),
    )


@dg.sensor(job=mapterhorn_source_job, minimum_interval_seconds=60)
def mapterhorn_source_merge_sensor(context: dg.SensorEvaluationContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.SensorResult:
    """Requests the merge (bounds.csv, coverage.gpkg, tarball, report) of each source whose files are all done."""
    catalog, root = mapterhorn_sources.catalog(), mapterhorn_sources.root
    known = set(context.instance.get_dynamic_partitions(source_partitions.name))
    requests = []
    for source in sources(catalog):
        fingerprint = source_fingerprint(root, [entry.key for entry in list_files(catalog, source)])
        if source in known and fingerprint:
            requests.append(dg.RunRequest(partition_key=source, run_key=f"{source}@{fingerprint}"))
    return dg.SensorResult(run_requests=requests)
