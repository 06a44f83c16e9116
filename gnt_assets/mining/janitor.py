"""The janitor: compare what Dagster recorded with what is in storage (the seed's janitor worker).

Stages, upstream first: ``export`` (Earth Engine exports) -> ``region`` (zarr region) ->
``tiles`` (packed training tiles) -> ``transfer`` (copy on the HPC target).
Each finding names its stage, partition, path and problem. Sequential
demotion: a partition restarts from its most upstream broken stage (a broken
transfer whose tiles are fine re-runs the transfer; broken tiles re-run tiles
and transfer; a region missing chunks re-runs the region download and
everything after it). Cleaning removes only what no complete partition needs:
orphans, temporaries and the broken outputs themselves; never a source that
has not been copied and verified elsewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import geopandas as gpd
from dagster import AssetKey
from upath import UPath

from gnt_assets.core.atomic import remove_if_unused
from gnt_assets.core.packed_tensors import INDEX_NAME, PackedTensorError, open_packed, verify_packed
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.io_managers.mmap_tensors import tensor_folder
from gnt_assets.mining.exports import description, ledger_path, read_ledger, reset_clusters, update_ledger, without_skipped
from gnt_assets.mining.regions import region_path
from gnt_assets.mining.training_tiles import (
    TrainingTileError,
    cluster_tiles,
    open_region,
    region_chunks_present,
    tile_window,
)
from gnt_assets.mining.transfer import partition_target, transfer_problems

STAGES = ("export", "region", "tiles", "transfer")
STAGE_ASSETS = {"export": "landsat_exports", "region": "landsat_regions", "tiles": "mining_training_tiles", "transfer": "mining_hpc_transfer"}
TILES_KEY = AssetKey(STAGE_ASSETS["tiles"])  # not from mining.dataset: that imports torch into every run


@dataclass(frozen=True)
class Finding:
    stage: str  # one of STAGES, or "orphan"
    partition: str | None
    path: str
    problem: str
    location: UPath | None = field(default=None, compare=False, repr=False)  # what clean() would remove
    drive_file_id: str | None = field(default=None, compare=False, repr=False)
    tile: tuple[int, int] | None = field(default=None, compare=False, repr=False)  # a region tile with chunks missing


def split_partition(partition: str) -> tuple[str, str]:
    country, year = partition.split("|")
    return country, year


def clusters_table(root: UPath, country: str) -> gpd.GeoDataFrame:
    """Mining I's clusters of a country, as the GeoParquet IO manager stored them."""
    return read_table(root / "tables" / "mining_clusters" / f"{country}.parquet")


def region_findings(root: UPath, partition: str, clusters: gpd.GeoDataFrame) -> list[Finding]:
    """The region store exists and has written every chunk under every cluster tile."""
    country, year = split_partition(partition)
    path = region_path(root, country, year)
    try:
        region = open_region(path, partition)
    except TrainingTileError as error:
        return [Finding("region", partition, str(path), str(error))]
    present = region_chunks_present(path)
    findings = []
    for tile in {(t.ix, t.iy): t for t in cluster_tiles(clusters)}.values():
        try:
            rows, cols = tile_window(region, tile.geobox, f"{partition} tile ({tile.ix}, {tile.iy})")
        except TrainingTileError as error:
            findings.append(Finding("region", partition, str(path), str(error)))
            continue
        if not present(rows, cols):
            findings.append(Finding("region", partition, str(path), f"tile ({tile.ix}, {tile.iy}): zarr chunks missing", tile=(tile.ix, tile.iy)))
    return findings


def tile_findings(root: UPath, partition: str, clusters: gpd.GeoDataFrame) -> list[Finding]:
    """The packed tiles open, pass their checksums, and hold exactly the clusters' tiles."""
    folder = tensor_folder(root, TILES_KEY, partition)
    try:
        index = open_packed(folder)
    except PackedTensorError as error:
        return [Finding("tiles", partition, str(folder), str(error))]
    findings = [Finding("tiles", partition, str(index.data_path), problem) for problem in verify_packed(index)]
    nan_only = {tuple(t) for t in index.attrs.get("nan_only", [])}
    expected: dict[tuple[int, int], str] = {}
    for t in cluster_tiles(clusters):
        if (t.ix, t.iy) not in nan_only:
            expected.setdefault((t.ix, t.iy), t.cluster_id)
    present = Counter(zip(index.rows["tile_ix"], index.rows["tile_iy"], strict=False))
    for ix, iy in sorted(set(expected) - set(present)):
        findings.append(Finding("tiles", partition, str(folder), f"tile ({ix}, {iy}) of cluster {expected[ix, iy][:8]} is missing from the index"))
    for ix, iy in sorted(set(present) - set(expected)):
        findings.append(Finding("tiles", partition, str(folder), f"tile ({ix}, {iy}) is in the index but no cluster covers it"))
    for (ix, iy), times in sorted(present.items()):
        if times > 1:
            findings.append(Finding("tiles", partition, str(folder), f"tile ({ix}, {iy}) is in the index {times} times"))
    return findings


def transfer_findings(root: UPath, target_root: UPath, partition: str) -> list[Finding]:
    country, year = split_partition(partition)
    target = partition_target(target_root, country, year)
    try:
        index = open_packed(tensor_folder(root, TILES_KEY, partition))
    except PackedTensorError as error:
        return [Finding("tiles", partition, str(target), f"cannot compare the transfer: {error}")]
    return [Finding("transfer", partition, str(target), problem) for problem in transfer_problems(index, target)]


def drive_findings(partition: str, clusters: gpd.GeoDataFrame, list_files: Callable[[str], list]) -> list[Finding]:
    """Export files still on Drive for a partition whose region Dagster recorded as written."""
    country, year = split_partition(partition)
    findings = []
    for cluster_id in clusters["cluster_id"]:
        for file in list_files(description(country, cluster_id, year)):
            findings.append(
                Finding("drive", partition, f"drive:{file.name}", "export file still on Drive after its region was written", drive_file_id=file.file_id)
            )
    return findings


def _partition_folders(base: UPath) -> dict[str, UPath]:
    if not base.exists():
        return {}
    return {f"{c.name}|{y.name}": y for c in base.iterdir() if c.is_dir() for y in c.iterdir()}


def orphan_findings(root: UPath, target_root: UPath, owned: Mapping[str, set[str]]) -> list[Finding]:
    """Files no materialized partition owns: unowned partition folders, regions, target copies,
    superseded data files and temporaries left by crashed writers."""
    findings = []
    tiles_base = root.joinpath("tensors", *TILES_KEY.path)
    for partition, folder in _partition_folders(tiles_base).items():
        if partition not in owned.get("tiles", set()):
            findings.append(Finding("orphan", partition, str(folder), "training tiles no materialized partition owns", folder))
            continue
        try:
            referenced = open_packed(folder).data_file
        except PackedTensorError:
            continue  # a broken folder is reported (and cleaned) whole by tile_findings
        for child in folder.iterdir():
            if child.name not in (INDEX_NAME, referenced):
                findings.append(Finding("orphan", partition, str(child), "file in a tiles folder that its index does not name", child))
    for partition, folder in _partition_folders(target_root).items():
        if partition not in owned.get("transfer", set()):
            findings.append(Finding("orphan", partition, str(folder), "copy on the HPC target no materialized transfer owns", folder))
    regions = root / "mining" / "regions"
    if regions.exists():
        for country in regions.iterdir():
            for store in country.iterdir():
                # A store "{year}.zarr", its completion markers ".{year}.zarr.regions" and its writers' lock
                # "{year}.zarr.lock" belong to one partition.
                year = store.name.removeprefix(".").removesuffix(".regions").removesuffix(".lock").removesuffix(".zarr")
                partition = f"{country.name}|{year}"
                if partition not in owned.get("region", set()):
                    findings.append(Finding("orphan", partition, str(store), "zarr region no materialized partition owns", store))
    return findings


def reset_for_missing_chunks(root: UPath, findings: Iterable[Finding]) -> dict[str, list[str]]:
    """Clean mode's repair of a region missing chunks: the clusters covering those tiles are reset in the ledger
    (their next attempt, "to export"): their Drive files were deleted after the first download, so the region step
    alone has nothing to write them from. Returns partition -> the export descriptions reset."""
    missing: dict[str, set[tuple[int, int]]] = {}
    for finding in findings:
        if finding.stage == "region" and finding.tile is not None and finding.partition:
            missing.setdefault(finding.partition, set()).add(finding.tile)
    reset: dict[str, list[str]] = {}
    for partition, tiles in sorted(missing.items()):
        country, year = split_partition(partition)
        clusters = clusters_table(root, country)
        ids = [row.cluster_id for row in clusters.itertuples() if any((int(ix), int(iy)) in tiles for ix, iy in row.tiles)]
        ledger = ledger_path(root, country, year)
        before = read_ledger(ledger)
        known = {r.spec.cluster_id for r in before}
        records, done = reset_clusters(before, [i for i in ids if i in known], reason="janitor: region chunks missing")
        if done:
            update_ledger(ledger, before, records)
            for record in records:
                if record.route == "direct" and record.spec.description in done:
                    (root / "mining" / "direct" / country / year / f"{record.spec.description}.tif").unlink(missing_ok=True)
            reset[partition] = done
    return reset


def demotions(findings: Iterable[Finding]) -> dict[str, str]:
    """Partition -> the stage it must restart from: its most upstream broken stage."""
    restart: dict[str, str] = {}
    for finding in findings:
        if finding.stage not in STAGES or finding.partition is None:
            continue
        current = restart.get(finding.partition)
        if current is None or STAGES.index(finding.stage) < STAGES.index(current):
            restart[finding.partition] = finding.stage
    return restart


def clean(
    root: UPath, target_root: UPath, findings: Iterable[Finding], delete_drive_file: Callable[[str], None] | None = None
) -> list[str]:
    """Remove orphans and broken outputs (tiles folders, target copies) and Drive leftovers; returns what went.

    Regions are never deleted (their good chunks stay; the re-run rewrites the
    missing ones), and a Drive file is deleted only when its partition's region
    has no finding, i.e. the downloaded copy is verified.
    """
    findings = list(findings)
    broken_regions = {f.partition for f in findings if f.stage == "region"}
    targets: dict[str, UPath] = {}
    removed = []
    for finding in findings:
        if finding.stage == "drive" and delete_drive_file and finding.partition not in broken_regions:
            delete_drive_file(finding.drive_file_id)
            removed.append(finding.path)
        if finding.stage == "orphan" and finding.location is not None:
            targets[finding.path] = finding.location
        elif finding.stage == "tiles":
            folder = tensor_folder(root, TILES_KEY, finding.partition)
            targets[str(folder)] = folder
        elif finding.stage == "transfer":
            folder = partition_target(target_root, *split_partition(finding.partition))
            targets[str(folder)] = folder
    for name, path in sorted(targets.items()):
        if path.is_file():  # a stray file in a tiles folder may be a writer's that has not published yet
            if remove_if_unused(path):
                removed.append(name)
        elif path.exists():
            path.fs.rm(path.path, recursive=True)
            removed.append(name)
    return removed


def sweep(
    root: UPath, target_root: UPath, owned: Mapping[str, set[str]], list_drive_files: Callable[[str], list] | None = None
) -> list[Finding]:
    """Every finding for the partitions Dagster recorded as materialized, per stage, plus orphans and
    Drive leftovers (``list_drive_files(name_prefix)`` lists the export folder)."""
    findings: list[Finding] = []
    clusters_by_country: dict[str, gpd.GeoDataFrame | None] = {}

    def clusters_of(partition: str) -> gpd.GeoDataFrame | None:
        country, _ = split_partition(partition)
        if country not in clusters_by_country:
            try:
                clusters_by_country[country] = clusters_table(root, country)
            except FileNotFoundError:
                clusters_by_country[country] = None
        return clusters_by_country[country]

    for stage, check in (("region", region_findings), ("tiles", tile_findings)):
        for partition in sorted(owned.get(stage, set())):
            clusters = clusters_of(partition)
            if clusters is None:
                findings.append(Finding(stage, partition, str(root / "tables" / "mining_clusters"), "no clusters table for this country; materialize mining_clusters"))
            else:
                country, year = split_partition(partition)
                findings.extend(check(root, partition, without_skipped(root, country, year, clusters)))
                if stage == "region" and list_drive_files is not None:
                    findings.extend(drive_findings(partition, clusters, list_drive_files))
    for partition in sorted(owned.get("transfer", set())):
        findings.extend(transfer_findings(root, target_root, partition))
    return findings + orphan_findings(root, target_root, owned)
