"""Mapterhorn: each listed file goes download -> unpacked -> georeferenced -> COG -> bounds ->
coverage (one partition per file), then each source is merged into bounds.csv, coverage.gpkg
and a verified tarball, with a report of where every file stands."""


from collections.abc import Callable

import dagster as dg
from upath import UPath

from gnt_assets.core.errors import is_transient
from gnt_assets.core.tarball import TarballError, stored_md5, verify_tarball
from gnt_assets.io_managers.tar import TarballContents, tarball_path
from gnt_assets.mapterhorn import checks, merge, steps
from gnt_assets.mapterhorn.catalog import CatalogError, license_pdf, list_files, read_metadata, source_of
from gnt_assets.mapterhorn.chain import FileWork, source_state
from gnt_assets.mapterhorn.progress import source_progress
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.materialization import catalog_metadata, output_metadata, quicklook_metadata
from gnt_assets.partitions import mapterhorn_files
from gnt_assets.partitions import mapterhorn_sources as source_partitions
from gnt_assets.resources.storage import StorageResource
from gnt_assets.retries import failure_for

GROUP = "mapterhorn"
FILE_CHAIN = dict(partitions_def=mapterhorn_files, group_name=GROUP, retry_policy=dg.RetryPolicy(max_retries=1, delay=1))
SOURCE_STEP = dict(partitions_def=source_partitions, group_name=GROUP)
ALL_FILES = dg.AllPartitionMapping()

def _file_result(record: dict, check: dg.AssetCheckResult) -> dg.MaterializeResult:
    """Per-file metadata stays small (counts and sizes, well under 2 KB): at hundreds of thousands of
    files the event log holds one of these per step; previews are on the per-source assets."""
    paths = [UPath(p) for p in record["outputs"]]
    metadata = {**output_metadata(paths), "resumed": bool(record.get("resumed")), "work_bytes": record.get("work_bytes", 0)}
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def _step(work: FileWork, step: str, call: Callable[[], dict]) -> dict:
    """Runs one step of a file's chain. A failure is recorded for the source merge and report; one
    that no retry can mend (bad input) fails at once with its cause as the message, a transient one
    is raised for the retry policy."""
    try:
        record = call()
    except Exception as error:
        transient = is_transient(error)
        work.record_failure(step, error, transient=transient)
        message = str(error) if work.key in str(error) else f"mapterhorn file {work.key}: {error}"
        raise failure_for(error, f"{message} (step {step}; {type(error).__name__}: bad input, not retried)") from error
    work.clear_failure()
    return record


@dg.asset(**FILE_CHAIN, check_specs=[checks.spec("mapterhorn_download", "download_verified", "Size and published MD5 verified.")])
def mapterhorn_download(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The file as published at its URL, fetched with Range resume and verified (size, Content-MD5)."""
    key = context.partition_key
    work = FileWork(mapterhorn_sources.root, key)

    def fetch() -> dict:
        entry = {e.key: e for e in list_files(mapterhorn_sources.catalog(), source_of(key))}.get(key)
        if entry is None:
            raise CatalogError(f"mapterhorn file {key} is no longer in {source_of(key)}/file_list.txt")
        return steps.download_step(work, entry, mapterhorn_sources.fetch)

    record = _step(work, "download", fetch)
    return _file_result(record, checks.download_verified(record))


@dg.asset(**FILE_CHAIN, deps=["mapterhorn_download"], check_specs=[checks.spec("mapterhorn_unpacked", "rasters_found", "At least one raster unpacked.")])
def mapterhorn_unpacked(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The rasters inside the download: zip/7z members checked and extracted (the archive then deleted), or the file itself."""
    work = FileWork(mapterhorn_sources.root, context.partition_key)
    record = _step(work, "unpacked", lambda: steps.unpack_step(
        work, max_total_bytes=mapterhorn_sources.max_unpacked_bytes, max_ratio=mapterhorn_sources.max_compression_ratio))
    return _file_result(record, checks.rasters_found(record))


@dg.asset(**FILE_CHAIN, deps=["mapterhorn_unpacked"], check_specs=[checks.spec("mapterhorn_georeferenced", "every_raster_has_crs", "Every raster has a CRS.")])
def mapterhorn_georeferenced(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The unpacked rasters with the source's CRS: the crs in metadata.json replaces every file's (crs_mode "override",
    the default, as upstream's gdal_edit -a_srs) or is given only to files without one (crs_mode "missing")."""
    work = FileWork(mapterhorn_sources.root, context.partition_key)
    def georeference() -> dict:
        metadata = read_metadata(mapterhorn_sources.catalog(), work.source)
        return steps.georeference_step(work, metadata.crs, metadata.crs_mode)

    record = _step(work, "georeferenced", georeference)
    return _file_result(record, checks.every_raster_has_crs(record))


@dg.asset(**FILE_CHAIN, deps=["mapterhorn_georeferenced"], check_specs=[checks.spec("mapterhorn_cog", "valid_cog", "rio-cogeo valid, LERC, 512 blocks, no overviews.")])
def mapterhorn_cog(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource, storage: StorageResource) -> dg.MaterializeResult:
    """Cloud-Optimized GeoTIFFs (LERC, MAX_Z_ERROR 0.001, 512 blocks, no overviews) kept for the tarball; the work folder is then removed."""
    work = FileWork(mapterhorn_sources.root, context.partition_key)
    record = _step(work, "cog", lambda: steps.cog_step(work))
    result = _file_result(record, checks.valid_cog(record))
    cogs = {UPath(p).stem: p for p in record["outputs"] if UPath(p).exists()}
    stac = catalog_metadata(context, storage.root_path, cogs, hints={k: {"unit": "m"} for k in cogs}) if cogs else {}
    return dg.MaterializeResult(metadata={**result.metadata, **stac}, check_results=result.check_results)


@dg.asset(**FILE_CHAIN, deps=["mapterhorn_cog"], check_specs=[checks.spec("mapterhorn_bounds", "bounds_in_web_mercator", "Finite, ordered EPSG:3857 bounds.")])
def mapterhorn_bounds(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The file's bounds.csv rows (filename, left, bottom, right, top, width, height) in EPSG:3857."""
    work = FileWork(mapterhorn_sources.root, context.partition_key)
    record = _step(work, "bounds", lambda: steps.bounds_step(work))
    return _file_result(record, checks.bounds_in_web_mercator(record))


@dg.asset(**FILE_CHAIN, deps=["mapterhorn_cog"], check_specs=[checks.spec("mapterhorn_coverage", "coverage_not_empty", "A valid, non-empty polygon.")])
def mapterhorn_coverage(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The file's valid-pixel footprint (nodata left out) as a per-file GeoPackage, kept until the source merge."""
    work = FileWork(mapterhorn_sources.root, context.partition_key)
    record = _step(work, "polygon", lambda: steps.polygon_step(work))
    return _file_result(record, checks.coverage_not_empty(record))


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
    columns = ["key", "url", "step", "error"]
    return {
        "failed_files": dg.MetadataValue.int(len(failed)),
        "failed": dg.MetadataValue.table(
            records=[dg.TableRecord({c: str(f[c])[:300] for c in columns}) for f in failed[:50]],
            schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]),
        ),
    }


@dg.asset(**SOURCE_STEP, deps=[dg.AssetDep("mapterhorn_bounds", partition_mapping=ALL_FILES)], check_specs=[checks.spec("mapterhorn_bounds_csv", "one_row_per_cog", "One row per COG.")])
def mapterhorn_bounds_csv(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The source's bounds.csv: every verified file's rows once, sorted by file name (failed files left out)."""
    source, root = context.partition_key, mapterhorn_sources.root
    keys, failed = _merge(mapterhorn_sources, source)
    path = merge.bounds_csv(root, source, keys)
    metadata = {**output_metadata([UPath(path)]), "merged_files": len(keys), **_failed_metadata(failed)}
    return dg.MaterializeResult(metadata=metadata, check_results=[checks.one_row_per_cog(path, _cog_names(root, keys))])


@dg.asset(**SOURCE_STEP, deps=[dg.AssetDep("mapterhorn_coverage", partition_mapping=ALL_FILES)], check_specs=[checks.spec("mapterhorn_source_coverage", "merged_coverage_valid", "One valid polygon.")])
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
    """{source}.tar (LICENSE.pdf, metadata.json, bounds.csv, coverage.gpkg, files/*.tif of the verified files) and its .tar.md5 checksum."""
    source, root, catalog = context.partition_key, mapterhorn_sources.root, mapterhorn_sources.catalog()
    keys, _ = _merge(mapterhorn_sources, source)
    members = merge.tarball_members(root, read_metadata(catalog, source), license_pdf(catalog, source), _cog_names(root, keys))
    yield dg.Output(TarballContents(name=source, members=members))
    yield checks.tarball_matches_md5(verify_tarball(tarball_path(storage, source)), tuple(m.arcname for m in members))


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
