"""Mapterhorn: each listed file goes through its chain (download, unpack, georeference, COG, bounds,
coverage) in one per-file asset, ``mapterhorn_cog`` (one partition per file), then each source is
merged into bounds.csv, coverage.gpkg and a verified tarball, with a report of where every file stands."""


import dagster as dg
from upath import UPath

from gnt_assets.core.stac_catalog import StacItemBatch
from gnt_assets.core.tarball import TarballError, stored_md5, verify_tarball
from gnt_assets.io_managers.tar import TarballContents, tarball_path
from gnt_assets.mapterhorn import batch, checks, merge
from gnt_assets.mapterhorn.batch import FileOutcome
from gnt_assets.mapterhorn.catalog import license_pdf, list_files, read_metadata
from gnt_assets.mapterhorn.chain import STEPS, FileWork, source_state
from gnt_assets.mapterhorn.progress import file_status, source_progress
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.materialization import catalog_metadata, output_metadata, quicklook_metadata
from gnt_assets.partitions import mapterhorn_files
from gnt_assets.partitions import mapterhorn_sources as source_partitions
from gnt_assets.resources.storage import StorageResource

GROUP = "mapterhorn"
SOURCE_STEP = dict(partitions_def=source_partitions, group_name=GROUP)
ALL_FILES = dg.AllPartitionMapping()
FILE_ASSET = "mapterhorn_cog"

# Files per ranged run of a backfill (the file-list sensor's runs carry one tick's files): Dagster's
# start-up (about 2.3 s) and the run's bookkeeping are paid once per this many files; a backfill of a
# 35,000-file source is 70 runs.
FILES_PER_RUN = 500
# Each step's verification, run in the pool on the step's record before the next step deletes its input:
# a file refused stops there (blocking, as a per-file check would be), the run goes on.
STEP_CHECKS = {
    "download": checks.download_verified,
    "unpacked": checks.rasters_found,
    "georeferenced": checks.every_raster_has_crs,
    "cog": checks.valid_cog,
    "bounds": checks.bounds_in_web_mercator,
    "polygon": checks.coverage_not_empty,
}
# STAC items are written per file, their collection updated once per this many files (and at the run's end).
STAC_FOLD_EVERY = 100


def _problems(step: str, record: dict) -> list[str]:
    """The step's check on one file's record (an empty list: passed); run in the pool, per file."""
    result = STEP_CHECKS[step](record)
    return [] if result.passed else [str(result.metadata["problems"].value)]


def _file_metadata(outcome: FileOutcome, stac: dict[str, dg.MetadataValue]) -> dict[str, dg.MetadataValue]:
    """One materialization per file, well under 2 KB (COG count and bytes, bounds, area, step timings, the STAC item;
    each entry costs 140-270 bytes serialized): at hundreds of thousands of files the event log holds one of these per
    file. The rest of a file's facts are in its step records and the status table; previews are on the per-source assets."""
    cog, bounds, polygon = outcome.records["cog"], outcome.records["bounds"], outcome.records["polygon"]
    return {
        "files": dg.MetadataValue.int(len(cog["outputs"])),  # the COGs: files and bytes as every asset reports them
        "bytes": dg.MetadataValue.int(cog["bytes"]),
        # To the centimetre (bounds.csv keeps every digit); [] on a record from before the bounds step kept its bbox.
        "bounds_3857": dg.MetadataValue.json([round(v, 2) for v in bounds.get("bbox") or []]),
        "coverage_area": dg.MetadataValue.float(round(float(polygon.get("area", 0.0)), 2)),
        "step_seconds": dg.MetadataValue.json({step: round(outcome.step_seconds.get(step, 0.0), 3) for step in STEPS}),
        **stac,
    }


def _stac_item(stac: StacItemBatch, outcome: FileOutcome) -> dict[str, dg.MetadataValue]:
    cogs = {UPath(p).stem: UPath(p) for p in outcome.records["cog"]["outputs"]}
    try:  # the data is written and verified: a catalog problem is named, not a failed file
        return {"stac_item": dg.MetadataValue.path(str(stac.add(outcome.key, cogs, hints={k: {"unit": "m"} for k in cogs})))}
    except Exception as error:
        return {"stac_item_error": dg.MetadataValue.text(f"{type(error).__name__}: {error}"[:300])}


def _run_check(checked: int, refused: list[dict]) -> dg.AssetCheckResult:
    """One evaluation per run: the files it checked and those refused, by a step's check or its error (they stop
    there, unmaterialized, the run goes on), counted by step."""
    by_step = {step: sum(f["step"] == step for f in refused) for step in STEPS}
    shown = "; ".join(f"{f['key']} ({f['step']}): {f['error']}" for f in refused[:10])[:1500]
    return dg.AssetCheckResult(asset_key=FILE_ASSET, check_name="files_verified", passed=not refused, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"files_checked": checked, "files_refused": len(refused), "refused": shown or "none",
                                         "refused_by_step": dg.MetadataValue.json({s: n for s, n in by_step.items() if n})})


def _failed_table(failed: list[dict]) -> dg.MetadataValue:
    columns = ["key", "url", "step", "error"]
    return dg.MetadataValue.table(records=[dg.TableRecord({c: str(f[c])[:300] for c in columns}) for f in failed[:50]],
                                  schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]))


@dg.asset(
    name=FILE_ASSET,
    partitions_def=mapterhorn_files,
    group_name=GROUP,
    output_required=False,
    check_specs=[checks.spec(FILE_ASSET, "files_verified", "Each step's output verified per file (download size and MD5, rasters "
                             "found, a CRS on every raster, a valid COG, finite EPSG:3857 bounds, a non-empty polygon); a file "
                             "refused stops at that step, alone. One evaluation per run.", blocking=False)],
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=FILES_PER_RUN),
    retry_policy=dg.RetryPolicy(max_retries=1, delay=1),
)
def mapterhorn_cog(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource, storage: StorageResource):
    """The file's Cloud-Optimized GeoTIFFs (LERC, MAX_Z_ERROR 0.001, 512 blocks, no overviews) kept for the tarball, with
    its bounds.csv rows (EPSG:3857) and valid-pixel polygon kept until the source merge. Each file of the run's
    partition range goes through its whole chain on a pool of file_workers threads: download (Range resume,
    size and MD5 verified), unpack (zip/7z members checked), georeference (the source's CRS: crs_mode override, the
    default, as upstream's gdal_edit -a_srs, or missing), COG, bounds, polygon. The intermediates are deleted as
    soon as the next step is verified, so they are not assets of their own. A file that fails is recorded
    (failed.json, an observation naming step, URL and error) and stops alone while the run goes on."""
    keys = list(context.partition_keys)
    failed = []  # key, URL and the failure that stopped the file
    stac = StacItemBatch(storage.root_path, FILE_ASSET, fold_every=STAC_FOLD_EVERY)
    for outcome in batch.process_files(mapterhorn_sources, keys, workers=mapterhorn_sources.file_workers, verify=_problems,
                                       retries=mapterhorn_sources.file_retries):
        if outcome.failure is None:
            # One event per file, yielded as it finishes, so Dagster stores it while the pool works on (the event log
            # commits each event: on SQLite that is the larger part of a small file's Dagster cost).
            yield dg.AssetMaterialization(FILE_ASSET, partition=outcome.key, metadata=_file_metadata(outcome, _stac_item(stac, outcome)))
            continue
        failed.append({"key": outcome.key, "url": outcome.url, **outcome.failure})
        yield dg.AssetObservation(FILE_ASSET, partition=outcome.key, metadata={
            "failed_step": outcome.failure["step"], "url": outcome.url[:500], "error": outcome.failure["error"][:1000],
            "transient": outcome.failure["transient"]})
    try:
        stac.close()
    except Exception as error:  # the files are done and materialized: a catalog problem is named, not a failed run
        context.log.warning(f"STAC collection {stac.family} not updated for {len(stac.pending)} item(s): {type(error).__name__}: {error}")
    if failed:
        context.log.warning(f"{len(keys) - len(failed)} of {len(keys)} file(s) went through their chain; {len(failed)} failed: "
                            + "; ".join(f"{f['key']} ({f['step']}: {f['error'][:200]})" for f in failed[:20]))
    yield _run_check(len(keys), failed)


def _merge(resource: MapterhornSourcesResource, source: str) -> tuple[list[str], list[dict]]:
    """The source's files to merge (every verified one) and the failed ones (key, URL, step, error)."""
    entries = list_files(resource.catalog(), source)
    state = source_state(resource.root, [e.key for e in entries])
    keys = merge.merge_keys(state, read_metadata(resource.catalog(), source))
    return keys, merge.failed_files(state, {e.key: e.url for e in entries})


def _cog_names(root, keys: list[str]) -> list[str]:
    return [name for key in keys for name in FileWork(root, key).record("cog")["names"]]


def _failed_metadata(failed: list[dict]) -> dict[str, dg.MetadataValue]:
    """The failed files (the first 50 as a table; report.json lists all)."""
    return {"failed_files": dg.MetadataValue.int(len(failed)), "failed": _failed_table(failed)}


@dg.asset(**SOURCE_STEP, deps=[dg.AssetDep(FILE_ASSET, partition_mapping=ALL_FILES)], check_specs=[checks.spec("mapterhorn_bounds_csv", "one_row_per_cog", "One row per COG.")])
def mapterhorn_bounds_csv(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The source's bounds.csv: every verified file's rows once, sorted by file name (failed files left out)."""
    source, root = context.partition_key, mapterhorn_sources.root
    keys, failed = _merge(mapterhorn_sources, source)
    path = merge.bounds_csv(root, source, keys)
    metadata = {**output_metadata([UPath(path)]), "merged_files": len(keys), **_failed_metadata(failed)}
    return dg.MaterializeResult(metadata=metadata, check_results=[checks.one_row_per_cog(path, _cog_names(root, keys))])


@dg.asset(**SOURCE_STEP, deps=[dg.AssetDep(FILE_ASSET, partition_mapping=ALL_FILES)], check_specs=[checks.spec("mapterhorn_source_coverage", "merged_coverage_valid", "One valid polygon.")])
def mapterhorn_source_coverage(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource, storage: StorageResource) -> dg.MaterializeResult:
    """coverage.gpkg: the union (make-valid) of the verified files' polygons, which are deleted once it is verified; with a preview."""
    keys, failed = _merge(mapterhorn_sources, context.partition_key)
    path = merge.coverage_gpkg(mapterhorn_sources.root, context.partition_key, keys)
    metadata = {**output_metadata([UPath(path)]), "merged_files": len(keys), "failed_files": len(failed),
                **quicklook_metadata(merge.coverage_preview(path), title="coverage", variable="inside the merged coverage"),
                **catalog_metadata(context, storage.root_path, {"coverage": path})}
    return dg.MaterializeResult(metadata=metadata, check_results=[checks.merged_coverage_valid(path)])


@dg.asset(**SOURCE_STEP, io_manager_key="tar_io_manager", deps=["mapterhorn_bounds_csv", "mapterhorn_source_coverage"],
          check_specs=[checks.spec("mapterhorn_tarball", "tarball_matches_md5", "Tarball re-hashed against its .tar.md5, layout as listed.")])
def mapterhorn_tarball(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource, storage: StorageResource):
    """The source's tarball {source}.tar (LICENSE.pdf, metadata.json, bounds.csv, coverage.gpkg, files/*.tif of the verified files) and its .tar.md5."""
    source, root, catalog = context.partition_key, mapterhorn_sources.root, mapterhorn_sources.catalog()
    keys, _ = _merge(mapterhorn_sources, source)
    members = merge.tarball_members(root, read_metadata(catalog, source), license_pdf(catalog, source), _cog_names(root, keys))
    yield dg.Output(TarballContents(name=source, members=members))
    yield checks.tarball_matches_md5(verify_tarball(tarball_path(storage, source)), tuple(m.arcname for m in members))


@dg.asset(**SOURCE_STEP, io_manager_key="geoparquet_io_manager", kinds={"parquet"},
          deps=[dg.AssetDep(FILE_ASSET, partition_mapping=ALL_FILES)],
          check_specs=[checks.spec("mapterhorn_file_status", "one_row_per_listed_file", "One row per file of the list, each key once.")])
def mapterhorn_file_status(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource):
    """Where each file of the source stands, one row per listed file: key, URL, line, status (done, failed, pending),
    the step that failed or the last one done, the steps done, the error, COG count and bytes (tables/mapterhorn_file_status/{source}.parquet)."""
    entries = list_files(mapterhorn_sources.catalog(), context.partition_key)
    frame = file_status(mapterhorn_sources.root, entries)
    counts = frame["status"].value_counts()
    failed = frame[frame["status"] == "failed"].to_dict("records")
    metadata = {"dagster/row_count": len(frame), **{f"files_{s}": int(counts.get(s, 0)) for s in ("done", "failed", "pending")},
                "failed": _failed_table(failed)}
    yield dg.Output(frame, metadata=metadata)
    yield checks.one_row_per_listed_file(frame, [e.key for e in entries])


@dg.asset(**SOURCE_STEP, deps=["mapterhorn_tarball"], check_specs=[checks.spec("mapterhorn_report", "no_failed_files", "No file failed a step.", blocking=False)])
def mapterhorn_report(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource, storage: StorageResource) -> dg.MaterializeResult:
    """Where the source stands (also as merged/{source}/report.json): files pending / done / failed per step, every failed
    file by key, URL, step and error, the disk high-water mark, the tarball's size and MD5."""
    source = context.partition_key
    entries = list_files(mapterhorn_sources.catalog(), source)
    keys = [e.key for e in entries]
    state = source_state(mapterhorn_sources.root, keys)
    failed = merge.failed_files(state, {e.key: e.url for e in entries})
    progress = source_progress(mapterhorn_sources.root, keys, {key: f["step"] for key, f in state.failed.items()})
    try:  # the sidecar's MD5 (the tarball asset's check re-hashed it); no tarball yet is when the report matters most
        md5, size = stored_md5(tarball_path(storage, source))
    except TarballError:
        md5, size = None, 0
    table = dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in progress.rows],
        schema=dg.TableSchema(columns=[dg.TableColumn("step"), dg.TableColumn("pending", "int"), dg.TableColumn("done", "int"), dg.TableColumn("failed", "int")]),
    )
    facts = {"source_files": len(keys), "merged_files": len(state.verified), "disk_high_water_bytes": progress.high_water_bytes,
             "tarball_bytes": size, "tarball_md5": md5 or "no verified tarball yet"}
    path = merge.write_report(mapterhorn_sources.root, source, {**facts, "failed_files": failed, "steps": progress.rows})
    metadata = {**output_metadata([UPath(path)]), "steps": table, **facts, **_failed_metadata(failed)}
    return dg.MaterializeResult(metadata=metadata, check_results=[checks.no_failed_files(progress.failed_files)])
