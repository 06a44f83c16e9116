"""Mapterhorn: each listed file goes download -> unpacked -> georeferenced -> COG -> bounds ->
coverage (one partition per file), then each source is merged into bounds.csv, coverage.gpkg
and a verified tarball, with a report of where every file stands."""


import dagster as dg
import rasterio
from upath import UPath

from gnt_assets.core.quicklook import quicklook
from gnt_assets.core.tarball import TarballError, verify_tarball
from gnt_assets.io_managers.tar import TarballContents, tarball_path
from gnt_assets.mapterhorn import checks, merge, steps
from gnt_assets.mapterhorn.catalog import catalog_files, license_pdf, list_files, read_metadata
from gnt_assets.mapterhorn.chain import FileWork
from gnt_assets.mapterhorn.progress import source_progress
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.materialization import output_metadata, quicklook_metadata
from gnt_assets.partitions import mapterhorn_files
from gnt_assets.partitions import mapterhorn_sources as source_partitions
from gnt_assets.resources.storage import StorageResource

GROUP = "mapterhorn"
FILE_CHAIN = dict(partitions_def=mapterhorn_files, group_name=GROUP, retry_policy=dg.RetryPolicy(max_retries=1, delay=1))
SOURCE_STEP = dict(partitions_def=source_partitions, group_name=GROUP)
ALL_FILES = dg.AllPartitionMapping()
STEP_ASSETS = {"download": "mapterhorn_download", "unpacked": "mapterhorn_unpacked", "georeferenced": "mapterhorn_georeferenced",
               "cog": "mapterhorn_cog", "bounds": "mapterhorn_bounds", "polygon": "mapterhorn_coverage"}


def _file_result(record: dict, check: dg.AssetCheckResult) -> dg.MaterializeResult:
    paths = [UPath(p) for p in record["outputs"]]
    metadata = {**output_metadata(paths), "resumed": bool(record.get("resumed")), "work_bytes": record.get("work_bytes", 0)}
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def _with_quicklook(result: dg.MaterializeResult, record: dict) -> dg.MaterializeResult:
    """Adds a decimated preview of the step's first raster (when a resumed step's output is gone, none)."""
    present = [p for p in record["outputs"] if UPath(p).exists()]
    if not present:
        return result
    with rasterio.open(present[0]) as dataset:
        scale = max(1, max(dataset.shape) // 256)
        data = dataset.read(1, out_shape=(dataset.height // scale or 1, dataset.width // scale or 1))
        look = quicklook(data, nodata=dataset.nodata, crs=str(dataset.crs))
    return dg.MaterializeResult(metadata={**result.metadata, **quicklook_metadata(look)}, check_results=result.check_results)


@dg.asset(**FILE_CHAIN, check_specs=[checks.spec("mapterhorn_download", "download_verified", "Size and published MD5 verified.")])
def mapterhorn_download(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The file as published at its URL, fetched with Range resume and verified (size, Content-MD5)."""
    entry = catalog_files(mapterhorn_sources.catalog()).get(context.partition_key)
    if entry is None:
        raise KeyError(f"mapterhorn file {context.partition_key} is no longer in any file_list.txt")
    record = steps.download_step(FileWork(mapterhorn_sources.root, entry.key), entry, mapterhorn_sources.fetch)
    return _file_result(record, checks.download_verified(record))


@dg.asset(**FILE_CHAIN, deps=["mapterhorn_download"], check_specs=[checks.spec("mapterhorn_unpacked", "rasters_found", "At least one raster unpacked.")])
def mapterhorn_unpacked(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The rasters inside the download: zip/7z members checked and extracted (the archive then deleted), or the file itself."""
    work = FileWork(mapterhorn_sources.root, context.partition_key)
    record = steps.unpack_step(work, max_total_bytes=mapterhorn_sources.max_unpacked_bytes, max_ratio=mapterhorn_sources.max_compression_ratio)
    return _file_result(record, checks.rasters_found(record))


@dg.asset(**FILE_CHAIN, deps=["mapterhorn_unpacked"], check_specs=[checks.spec("mapterhorn_georeferenced", "every_raster_has_crs", "Every raster has a CRS.")])
def mapterhorn_georeferenced(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The unpacked rasters with a CRS: the source's configured CRS assigned to those that have none."""
    work = FileWork(mapterhorn_sources.root, context.partition_key)
    crs = read_metadata(mapterhorn_sources.catalog(), work.source).crs
    record = steps.georeference_step(work, crs)
    return _with_quicklook(_file_result(record, checks.every_raster_has_crs(record)), record)


@dg.asset(**FILE_CHAIN, deps=["mapterhorn_georeferenced"], check_specs=[checks.spec("mapterhorn_cog", "valid_cog", "rio-cogeo valid, LERC, 512 blocks, no overviews.")])
def mapterhorn_cog(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """Cloud-Optimized GeoTIFFs (LERC, MAX_Z_ERROR 0.001, 512 blocks, no overviews) kept for the tarball; the work folder is then removed."""
    record = steps.cog_step(FileWork(mapterhorn_sources.root, context.partition_key))
    return _with_quicklook(_file_result(record, checks.valid_cog(record)), record)


@dg.asset(**FILE_CHAIN, deps=["mapterhorn_cog"], check_specs=[checks.spec("mapterhorn_bounds", "bounds_in_web_mercator", "Finite, ordered EPSG:3857 bounds.")])
def mapterhorn_bounds(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The file's bounds.csv rows (filename, left, bottom, right, top, width, height) in EPSG:3857."""
    record = steps.bounds_step(FileWork(mapterhorn_sources.root, context.partition_key))
    return _file_result(record, checks.bounds_in_web_mercator(record))


@dg.asset(**FILE_CHAIN, deps=["mapterhorn_cog"], check_specs=[checks.spec("mapterhorn_coverage", "coverage_not_empty", "A valid, non-empty polygon.")])
def mapterhorn_coverage(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The file's valid-pixel footprint (nodata left out) as a per-file GeoPackage, kept until the source merge."""
    record = steps.polygon_step(FileWork(mapterhorn_sources.root, context.partition_key))
    return _file_result(record, checks.coverage_not_empty(record))


def _source_keys(resource: MapterhornSourcesResource, source: str) -> list[str]:
    return [entry.key for entry in list_files(resource.catalog(), source)]


@dg.asset(**SOURCE_STEP, deps=[dg.AssetDep("mapterhorn_bounds", partition_mapping=ALL_FILES)], check_specs=[checks.spec("mapterhorn_bounds_csv", "one_row_per_cog", "One row per COG.")])
def mapterhorn_bounds_csv(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """The source's bounds.csv: every file's rows once, sorted by file name."""
    source, root = context.partition_key, mapterhorn_sources.root
    path = merge.bounds_csv(root, source, _source_keys(mapterhorn_sources, source))
    cogs = [name for key in _source_keys(mapterhorn_sources, source) for name in FileWork(root, key).record("cog")["names"]]
    return dg.MaterializeResult(metadata=output_metadata([UPath(path)]), check_results=[checks.one_row_per_cog(path, cogs)])


@dg.asset(**SOURCE_STEP, deps=[dg.AssetDep("mapterhorn_coverage", partition_mapping=ALL_FILES)], check_specs=[checks.spec("mapterhorn_source_coverage", "merged_coverage_valid", "One valid polygon.")])
def mapterhorn_source_coverage(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource) -> dg.MaterializeResult:
    """coverage.gpkg: the union (make-valid) of the source's per-file polygons, which are deleted once it is verified."""
    path = merge.coverage_gpkg(mapterhorn_sources.root, context.partition_key, _source_keys(mapterhorn_sources, context.partition_key))
    return dg.MaterializeResult(metadata=output_metadata([UPath(path)]), check_results=[checks.merged_coverage_valid(path)])


@dg.asset(**SOURCE_STEP, io_manager_key="tar_io_manager", deps=["mapterhorn_bounds_csv", "mapterhorn_source_coverage"],
          check_specs=[checks.spec("mapterhorn_tarball", "tarball_matches_md5", "Tarball re-hashed against its .tar.md5, layout as listed.")])
def mapterhorn_tarball(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource, storage: StorageResource):
    """``{source}.tar`` (LICENSE.pdf, metadata.json, bounds.csv, coverage.gpkg, files/*.tif) and its ``.tar.md5``."""
    source, root, catalog = context.partition_key, mapterhorn_sources.root, mapterhorn_sources.catalog()
    names = [name for key in _source_keys(mapterhorn_sources, source) for name in FileWork(root, key).record("cog")["names"]]
    members = merge.tarball_members(root, read_metadata(catalog, source), license_pdf(catalog, source), names)
    yield dg.Output(TarballContents(name=source, members=members))
    yield checks.tarball_matches_md5(verify_tarball(tarball_path(storage, source)), tuple(m.arcname for m in members))


@dg.asset(**SOURCE_STEP, deps=["mapterhorn_tarball"], check_specs=[checks.spec("mapterhorn_report", "no_failed_files", "No file failed a step.", blocking=False)])
def mapterhorn_report(context: dg.AssetExecutionContext, mapterhorn_sources: MapterhornSourcesResource, storage: StorageResource) -> dg.MaterializeResult:
    """Where the source stands (also as merged/{source}/report.json): files pending / done / failed per step, the disk high-water mark, the tarball's size and MD5."""
    keys = _source_keys(mapterhorn_sources, context.partition_key)
    failed = {step: {k for k, status in (context.instance.get_status_by_partition(dg.AssetKey(asset), keys, mapterhorn_files) or {}).items()
                     if status == dg.AssetPartitionStatus.FAILED} for step, asset in STEP_ASSETS.items()}
    progress = source_progress(mapterhorn_sources.root, keys, failed)
    try:  # a source with a failing file has no tarball yet, and that is when the report matters most
        tarball = verify_tarball(tarball_path(storage, context.partition_key))
    except TarballError:
        tarball = None
    table = dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in progress.rows],
        schema=dg.TableSchema(columns=[dg.TableColumn("step"), dg.TableColumn("pending", "int"), dg.TableColumn("done", "int"), dg.TableColumn("failed", "int")]),
    )
    facts = {"source_files": len(keys), "disk_high_water_bytes": progress.high_water_bytes,
             "tarball_bytes": tarball.size if tarball else 0, "tarball_md5": tarball.md5 if tarball else "no verified tarball yet"}
    path = merge.write_report(mapterhorn_sources.root, context.partition_key, {**facts, "steps": progress.rows})
    metadata = {**output_metadata([UPath(path)]), "steps": table, **facts}
    return dg.MaterializeResult(metadata=metadata, check_results=[checks.no_failed_files(progress.failed_files)])
