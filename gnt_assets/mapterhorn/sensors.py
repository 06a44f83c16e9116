"""Mapterhorn sensors: new file-list lines become partitions and runs; finished sources get merged.

At catalog scale (a source can list 35,000 files, a catalog several hundred thousand) the file-list
sensor keeps a compact cursor (per source: the list's SHA-256 and line count, and whether some of its
new files still wait for a run), reads each list once per tick, skips lists that did not change, and
adds partitions and requests runs in batches of at most ``MAX_RUNS_PER_TICK``; the rest follow on
the next ticks.
"""

import hashlib
import json

import dagster as dg

from gnt_assets.mapterhorn.catalog import parse_file_list, read_metadata, source_of, sources, unusable_sources
from gnt_assets.mapterhorn.chain import source_state
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.partitions import mapterhorn_files
from gnt_assets.partitions import mapterhorn_sources as source_partitions

FILE_ASSETS = ["mapterhorn_download", "mapterhorn_unpacked", "mapterhorn_georeferenced", "mapterhorn_cog", "mapterhorn_bounds", "mapterhorn_coverage"]
SOURCE_ASSETS = ["mapterhorn_bounds_csv", "mapterhorn_source_coverage", "mapterhorn_tarball", "mapterhorn_report"]
# Dagster rebuilds the set of newly added partition keys once per run request, so a tick's cost grows
# with (requests x added keys): batches keep every tick far below the sensor timeout.
MAX_RUNS_PER_TICK = 5_000
MAX_REMOVALS_SHOWN = 1000

mapterhorn_file_job = dg.define_asset_job(
    "mapterhorn_file_job", selection=dg.AssetSelection.assets(*FILE_ASSETS),
    description="One source file from download to Cloud-Optimized GeoTIFF: download, unpack, georeference, COG, bounds and coverage.")
mapterhorn_source_job = dg.define_asset_job(
    "mapterhorn_source_job", selection=dg.AssetSelection.assets(*SOURCE_ASSETS),
    description="Merges one source's finished files into bounds.csv, coverage.gpkg, the tarball with its MD5 and the report.")


def _url_tag(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def plan_file_list_tick(lists: dict[str, bytes], cursor: dict, known: set[str], known_sources: set[str], *, max_runs: int) -> dict:
    """One tick of the file-list sensor, pure: ``lists`` maps source -> file_list.txt bytes, ``known``
    is every existing file partition. Returns the keys to add and request (list order, at most
    ``max_runs``), the new sources, keys whose lines were removed, and the next cursor."""
    requests, removed, new_cursor = [], [], {}
    budget = max_runs
    for source, data in sorted(lists.items()):
        digest = hashlib.sha256(data).hexdigest()[:32]
        earlier = cursor.get(source)
        if earlier and earlier["sha256"] == digest and not earlier["waiting"]:
            new_cursor[source] = earlier  # unchanged and every file requested: not even parsed
            continue
        entries = parse_file_list(source, data.decode())
        current = {e.key for e in entries}
        if not earlier or earlier["sha256"] != digest:
            removed += sorted(k for k in known if source_of(k) == source and k not in current)
        new = [e for e in entries if e.key not in known]
        taken, budget = new[:budget], budget - len(new[:budget])
        requests += [(e.key, e.url) for e in taken]
        new_cursor[source] = {"sha256": digest, "lines": data.count(b"\n"), "waiting": len(new) - len(taken)}
    new_sources = sorted({source_of(key) for key, _ in requests} - known_sources)
    return {"requests": requests, "new_sources": new_sources, "removed": removed, "cursor": new_cursor}


@dg.sensor(job=mapterhorn_file_job, minimum_interval_seconds=60,
           description="Every minute: each new line of a source's file_list.txt becomes a file partition and starts its run, "
                       "at most 5,000 per tick. Removed lines are reported on the file's download, never deleted.")
def mapterhorn_file_list_sensor(context: dg.SensorEvaluationContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.SensorResult:
    """Adds a partition per new file_list.txt line and requests its chain, in batches; removed lines are reported, not deleted."""
    catalog = mapterhorn_sources.catalog()
    if skipped := unusable_sources(catalog):
        context.log.warning(f"source folders skipped, rename them to letters, digits, '_' or '-': {', '.join(skipped)}")
    cursor = json.loads(context.cursor) if context.cursor else {}
    lists = {source: (catalog / source / "file_list.txt").read_bytes() for source in sources(catalog)}
    changed = [s for s, data in lists.items() if cursor.get(s, {}).get("sha256") != hashlib.sha256(data).hexdigest()[:32] or cursor[s]["waiting"]]
    known = set(context.instance.get_dynamic_partitions(mapterhorn_files.name)) if changed else set()
    known_sources = set(context.instance.get_dynamic_partitions(source_partitions.name))
    plan = plan_file_list_tick(lists, cursor, known, known_sources, max_runs=MAX_RUNS_PER_TICK)
    if plan["removed"]:
        shown = plan["removed"][:MAX_REMOVALS_SHOWN]
        context.log.warning(f"{len(plan['removed'])} line(s) removed from file lists; their partitions and outputs are kept: {', '.join(shown[:20])}")
    # Shown on the file's download partition in the UI, so a removal is visible where the file's history is.
    removals = [dg.AssetObservation(asset_key="mapterhorn_download", partition=key, metadata={"removed_from_file_list": f"{source_of(key)}/file_list.txt"})
                for key in plan["removed"][:MAX_REMOVALS_SHOWN]]
    waiting = sum(entry["waiting"] for entry in plan["cursor"].values())
    if waiting:
        context.log.info(f"{len(plan['requests'])} file run(s) requested; {waiting} more on the next ticks")
    keys = [key for key, _ in plan["requests"]]
    idle = None if keys else f"no new lines in the file lists of {len(lists)} source(s) in {catalog}"
    return dg.SensorResult(
        skip_reason=idle,
        run_requests=[dg.RunRequest(partition_key=key, run_key=f"{key}@{_url_tag(url)}") for key, url in plan["requests"]],
        dynamic_partitions_requests=[mapterhorn_files.build_add_request(keys), source_partitions.build_add_request(plan["new_sources"])],
        asset_events=removals,
        cursor=json.dumps(plan["cursor"], sort_keys=True, separators=(",", ":")),
    )


@dg.sensor(job=mapterhorn_source_job, minimum_interval_seconds=60,
           description="Every minute: starts the merge of each source whose files have all finished (verified or failed "
                       "for good) since its last merge. Failed files are left out and named in the report.")
def mapterhorn_source_merge_sensor(context: dg.SensorEvaluationContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.SensorResult:
    """Requests the merge (bounds.csv, coverage.gpkg, tarball, report) of each source once no file is
    pending: every file verified or failed (the merge leaves failed files out and the report names them)."""
    catalog, root = mapterhorn_sources.catalog(), mapterhorn_sources.root
    known = set(context.instance.get_dynamic_partitions(source_partitions.name))
    requests = []
    for source in sources(catalog):
        if source not in known:
            continue
        entries = parse_file_list(source, (catalog / source / "file_list.txt").read_text())
        state = source_state(root, [entry.key for entry in entries])
        fingerprint = state.fingerprint(root)
        if fingerprint and state.failed and read_metadata(catalog, source).require_all_files:
            context.log.warning(f"source {source}: not merged, metadata.json sets require_all_files and {len(state.failed)} file(s) failed")
        elif fingerprint:
            requests.append(dg.RunRequest(partition_key=source, run_key=f"{source}@{fingerprint}"))
    idle = None if requests else f"no source finished new files since its last merge ({len(known)} known)"
    return dg.SensorResult(run_requests=requests, skip_reason=idle)
