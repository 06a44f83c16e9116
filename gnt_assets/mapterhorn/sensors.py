"""Mapterhorn sensors: new file-list lines become partitions and runs; finished sources get merged.

At catalog scale (a source can list 35,000 files, a catalog several hundred thousand) the file-list
sensor keeps a compact cursor (per source: the list's SHA-256 and line count, and whether some of its
new files still wait for a run), reads each list once per tick, skips lists that did not change, and
adds at most ``MAX_FILES_PER_TICK`` partitions per tick, in one call; the rest follow on the next
ticks. The new keys are added in list order, so a tick's keys are one partition range: one ranged run
(one process, the in-process executor) carries them.
"""

import hashlib
import json

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from gnt_assets.mapterhorn.catalog import parse_file_list, read_metadata, source_of, sources, unusable_sources
from gnt_assets.mapterhorn.chain import source_state
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.partitions import mapterhorn_files
from gnt_assets.partitions import mapterhorn_sources as source_partitions
from gnt_assets.run_monitoring import IN_PROCESS_EXECUTOR

FILE_ASSETS = ["mapterhorn_cog"]
SOURCE_ASSETS = ["mapterhorn_bounds_csv", "mapterhorn_source_coverage", "mapterhorn_tarball", "mapterhorn_file_status", "mapterhorn_report"]
# Partitions added (files queued) per tick, as one ranged run. What a tick costs at 100,000 keys is the
# list's parse (about 1 s) and, per run created, Dagster resolving the run's range against the whole key
# set for its planned events (about 0.3 s per asset; one file asset); so one run per tick, and 1,000 files queue a
# 100,000-file source in 100 ticks (50 min at one tick per 30 s, while the first runs already work).
MAX_FILES_PER_TICK = 1_000
MAX_REMOVALS_SHOWN = 1000

# One process per run (no step subprocess): the run's files share the pool of the one chain step.
mapterhorn_file_job = dg.define_asset_job(
    "mapterhorn_file_job", selection=dg.AssetSelection.assets(*FILE_ASSETS), executor_def=IN_PROCESS_EXECUTOR,
    description="Source files from download to Cloud-Optimized GeoTIFF (download, unpack, georeference, COG, bounds and "
                "coverage), many files per run on a bounded pool; a failed file fails alone.")
mapterhorn_source_job = dg.define_asset_job(
    "mapterhorn_source_job", selection=dg.AssetSelection.assets(*SOURCE_ASSETS),
    description="Merges one source's finished files into bounds.csv, coverage.gpkg, the tarball with its MD5, the file status table and the report.")


def _url_tag(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def range_requests(requests: list[tuple[str, str]], files_per_run: int) -> list[dg.RunRequest]:
    """Ranged run requests over consecutive new keys (``(key, url)`` in the order they are added), at most
    ``files_per_run`` each; the run key names the range and hashes its URLs, so a re-listed file runs again."""
    runs = []
    for offset in range(0, len(requests), files_per_run):
        chunk = requests[offset : offset + files_per_run]
        digest = _url_tag("\n".join(f"{key} {url}" for key, url in chunk))
        first, last = chunk[0][0], chunk[-1][0]
        runs.append(dg.RunRequest(run_key=f"{first}..{last}@{digest}",
                                  tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last, "mapterhorn/files": str(len(chunk))}))
    return runs


def plan_file_list_tick(lists: dict[str, bytes], cursor: dict, known: set[str], known_sources: set[str], *, max_files: int) -> dict:
    """One tick of the file-list sensor, pure: ``lists`` maps source -> file_list.txt bytes, ``known``
    is every existing file partition. Returns the keys to add and request (list order, at most
    ``max_files``), the new sources, keys whose lines were removed, and the next cursor."""
    requests, removed, new_cursor = [], [], {}
    budget = max_files
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


@dg.sensor(job=mapterhorn_file_job, minimum_interval_seconds=30,
           description="Every 30 seconds: each new line of a source's file_list.txt becomes a file partition; new files are "
                       "requested as ranged runs of consecutive files, a capped number per tick. Removed lines are reported "
                       "on the file's partition of mapterhorn_cog, never deleted.")
def mapterhorn_file_list_sensor(context: dg.SensorEvaluationContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.SensorResult:
    """Adds a partition per new file_list.txt line and requests ranged runs of their chains, in batches; removed lines are reported, not deleted."""
    catalog = mapterhorn_sources.catalog()
    if skipped := unusable_sources(catalog):
        context.log.warning(f"source folders skipped, rename them to letters, digits, '_' or '-': {', '.join(skipped)}")
    state = json.loads(context.cursor) if context.cursor else {}
    cursor, settled = (state["sources"], state["partitions"]) if "sources" in state else (state, None)
    lists = {source: (catalog / source / "file_list.txt").read_bytes() for source in sources(catalog)}
    changed = [s for s, data in lists.items() if cursor.get(s, {}).get("sha256") != hashlib.sha256(data).hexdigest()[:32] or cursor[s]["waiting"]]
    existing = context.instance.get_dynamic_partitions(mapterhorn_files.name) if changed else []
    # Partitions are listed in the order they were added. Keys past the count the last completed tick left were
    # added by a tick whose cursor was never saved (daemon killed, tick timed out): they count as new again, so
    # the same ranges and run keys are requested (Dagster never launches a run key twice).
    known = set(existing if settled is None else existing[:settled])
    known_sources = set(context.instance.get_dynamic_partitions(source_partitions.name))
    plan = plan_file_list_tick(lists, cursor, known, known_sources, max_files=MAX_FILES_PER_TICK)
    if plan["removed"]:
        shown = plan["removed"][:MAX_REMOVALS_SHOWN]
        context.log.warning(f"{len(plan['removed'])} line(s) removed from file lists; their partitions and outputs are kept: {', '.join(shown[:20])}")
    # Shown on the file's mapterhorn_cog partition in the UI, so a removal is visible where the file's history is.
    removals = [dg.AssetObservation(asset_key="mapterhorn_cog", partition=key, metadata={"removed_from_file_list": f"{source_of(key)}/file_list.txt"})
                for key in plan["removed"][:MAX_REMOVALS_SHOWN]]
    waiting = sum(entry["waiting"] for entry in plan["cursor"].values())
    if waiting:
        context.log.info(f"{len(plan['requests'])} file(s) requested; {waiting} more on the next ticks")
    keys = [key for key, _ in plan["requests"]]
    present = set(existing)
    fresh = [key for key in keys if key not in present]
    if fresh:
        # One insert for the tick's keys, which the sensor already knows are new: through a SensorResult add
        # request the daemon checks every key with a query of its own (7 s per 1,000 keys at 100,000 keys).
        context.instance.add_dynamic_partitions(mapterhorn_files.name, fresh)
    partitions = len(existing) + len(fresh) if changed else settled
    idle = None if keys else f"no new lines in the file lists of {len(lists)} source(s) in {catalog}"
    return dg.SensorResult(
        skip_reason=idle,
        run_requests=range_requests(plan["requests"], MAX_FILES_PER_TICK),
        dynamic_partitions_requests=[source_partitions.build_add_request(plan["new_sources"])],
        asset_events=removals,
        cursor=json.dumps({"sources": plan["cursor"], "partitions": partitions}, sort_keys=True, separators=(",", ":")),
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
