"""Through Dagster, a tiled grid's cells fanned out inside the run: per-cell retries, a failed cell failing only its
own chunk partition, and a rerun of that partition redoing only the failed cell (its ledger)."""

from collections import Counter

import dagster as dg
import pytest

from gnt_assets.definitions import defs
from gnt_assets.profiles import resources_for_profile
from gnt_assets.sentinel import chunk_runs, mosaic
from gnt_assets.sentinel.cube_store import CubeStore
from gnt_assets.sentinel.local import DEMO_BBOX, LocalSentinelStac
from gnt_assets.sentinel.sensors import sentinel_chunk_sensor

ASSETS = [*defs.assets, *(defs.asset_checks or [])]
MONTH = "2024-07-01"
FAST_RETRIES = {"ops": {"sentinel_mosaic": {"config": {"cell_attempts": 3, "retry_backoff_s": 0.0}}}}


@pytest.fixture
def tiled(storage_root, instance, stac_url):
    """(resources, grid table, chunk partition keys) of a tiled grid over the demo AOI: 2 x 2 cells of 12 px per chunk."""
    from gnt_assets.io_managers.geoparquet import read_table

    resources = {**resources_for_profile("local"), "sentinel_stac": LocalSentinelStac(url=stac_url)}
    tiles = {"name": "tiles", "generator": "square", "d": 240, "res_m": 20.0, "chunk_km": 0.48}
    config = {"ops": {"sentinel_aoi": {"config": {"bbox": list(DEMO_BBOX)}}, "sentinel_grid": {"config": {"grids": [tiles]}}}}
    dg.materialize(ASSETS, selection=["sentinel_aoi", "sentinel_grid"], instance=instance, resources=resources, run_config=config)
    sensed = sentinel_chunk_sensor(dg.build_sensor_context(instance=instance, definitions=defs,
                                                           resources={"storage": resources["storage"]}))
    (request,) = sensed.dynamic_partitions_requests
    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    table = read_table(chunk_runs.grid_table_path(resources["storage"]))
    chunks = instance.get_dynamic_partitions("sentinel_chunk")
    assert len(chunks) >= 2 and all(len(chunk_runs.partition_cells(table, c)) >= 2 for c in chunks)
    return resources, table, chunks


@pytest.fixture
def loads(monkeypatch):
    """Scene loads per cell; cells named in ``failing`` raise a transient read error (``failing[cell]`` times, or always)."""
    counts, failing = Counter(), {}
    real = mosaic.load_scenes

    def counted(job, items, geobox=None):
        counts[job.chunk] += 1
        if counts[job.chunk] <= failing.get(job.chunk, 0):
            raise mosaic.SceneLoadError(f"injected read failure of cell {job.chunk}")
        return real(job, items, geobox)

    monkeypatch.setattr(mosaic, "load_scenes", counted)
    return counts, failing


def _key(month, chunk):
    return str(dg.MultiPartitionKey({"month": month, "chunk": chunk}))


def _range(chunks):
    return {"dagster/asset_partition_range_start": _key(MONTH, chunks[0]), "dagster/asset_partition_range_end": _key(MONTH, chunks[-1])}


def _complete(storage, table, chunk) -> list[bool]:
    return [cube.status(region).complete for cube, region in chunk_runs.partition_regions(storage, table, MONTH, chunk)]


def test_a_cell_whose_store_write_fails_twice_succeeds_by_retry(tiled, loads, instance, monkeypatch):
    """A flaky object store (a timeout on write) is retried with backoff like a flaky search or read."""
    resources, table, chunks = tiled
    counts, _ = loads
    cell = next(iter(chunk_runs.partition_cells(table, chunks[0])))
    writes, real = Counter(), CubeStore.write

    def flaky(self, dataset, layout, chunk, month):
        writes[chunk] += 1
        if chunk == cell and writes[chunk] <= 2:
            raise TimeoutError(f"injected store timeout writing {chunk}")
        return real(self, dataset, layout, chunk, month)

    monkeypatch.setattr(CubeStore, "write", flaky)
    result = dg.materialize(ASSETS, selection=["sentinel_mosaic"], partition_key=_key(MONTH, chunks[0]), instance=instance,
                            resources=resources, run_config=FAST_RETRIES)
    assert result.success and writes[cell] == 3 and counts[cell] == 3
    assert all(_complete(resources["storage"], table, chunks[0]))
    records = result.asset_materializations_for_node("sentinel_mosaic")[0].metadata["chunk_results"].value.records
    assert records[0].data["attempts"] == "3"


def test_a_cell_that_always_fails_fails_only_its_own_chunk(tiled, loads, instance):
    """One run of two chunk partitions: the chunk with the failing cell fails naming the cell, its other cells are
    written; the other chunk is materialized."""
    resources, table, chunks = tiled
    counts, failing = loads
    bad, good = chunks[0], chunks[1]
    cells = list(chunk_runs.partition_cells(table, bad))
    failing[cells[0]] = 10**6
    result = dg.materialize(ASSETS, selection=["sentinel_mosaic"], instance=instance, resources=resources,
                            run_config=FAST_RETRIES, tags=_range([bad, good]), raise_on_error=False)
    assert not result.success and counts[cells[0]] == 3  # tried cell_attempts times
    assert instance.get_materialized_partitions(dg.AssetKey("sentinel_mosaic")) == {_key(MONTH, good)}
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data.description)
    assert f"month {MONTH} chunk {bad}: 1 cell(s) failed after retries: {cells[0]}" in message
    assert _complete(resources["storage"], table, bad) == [False, *[True] * (len(cells) - 1)]
    assert all(_complete(resources["storage"], table, good))


def test_a_rerun_of_the_failed_chunk_redoes_only_the_failed_cell(tiled, loads, instance):
    resources, table, chunks = tiled
    counts, failing = loads
    cells = list(chunk_runs.partition_cells(table, chunks[0]))
    failing[cells[0]] = 10**6
    first = dg.materialize(ASSETS, selection=["sentinel_mosaic"], partition_key=_key(MONTH, chunks[0]), instance=instance,
                           resources=resources, run_config=FAST_RETRIES, raise_on_error=False)
    assert not first.success and all(counts[c] == 1 for c in cells[1:])

    failing.clear()
    counts.clear()
    rerun = dg.materialize(ASSETS, selection=["sentinel_mosaic"], partition_key=_key(MONTH, chunks[0]), instance=instance,
                           resources=resources, run_config=FAST_RETRIES)
    assert rerun.success and dict(counts) == {cells[0]: 1}  # the written cells are kept, not reloaded
    assert all(_complete(resources["storage"], table, chunks[0]))
    checks = {e.check_name: e.passed for e in rerun.get_asset_check_evaluations()}
    assert checks["region_written"] and checks["reflectance_plausible"] and checks["scenes_found"]

    counts.clear()  # the partition succeeded: materializing it again refreshes every cell
    again = dg.materialize(ASSETS, selection=["sentinel_mosaic"], partition_key=_key(MONTH, chunks[0]), instance=instance,
                           resources=resources, run_config=FAST_RETRIES)
    assert again.success and set(counts) == set(cells)


def test_a_run_killed_before_its_ledger_is_resumed_from_the_cells_it_finished(tiled, loads, instance, monkeypatch):
    resources, table, chunks = tiled
    counts, _ = loads
    cells = list(chunk_runs.partition_cells(table, chunks[0]))
    real, recorded = chunk_runs.record_cell, []

    def dies_after_the_first_cell(storage, result, owner):
        real(storage, result, owner)
        recorded.append(result.chunk)
        raise RuntimeError("the run's process dies here")  # nothing after this runs: no ledger, no result

    monkeypatch.setattr(chunk_runs, "record_cell", dies_after_the_first_cell)
    killed = dg.materialize(ASSETS, selection=["sentinel_mosaic"], partition_key=_key(MONTH, chunks[0]), instance=instance,
                            resources=resources, run_config=FAST_RETRIES, raise_on_error=False)
    assert not killed.success
    monkeypatch.setattr(chunk_runs, "record_cell", real)
    assert len(recorded) == 1 and not chunk_runs._ledger_path(resources["storage"], MONTH, chunks[0]).exists()

    counts.clear()
    rerun = dg.materialize(ASSETS, selection=["sentinel_mosaic"], partition_key=_key(MONTH, chunks[0]), instance=instance,
                           resources=resources, run_config=FAST_RETRIES)
    assert rerun.success and set(counts) == set(cells) - set(recorded)  # the finished cell is kept, not reloaded
    assert all(_complete(resources["storage"], table, chunks[0]))
    assert not chunk_runs._progress_folder(resources["storage"], MONTH, chunks[0]).exists()  # folded into the ledger


def test_a_sharded_grid_runs_a_job_per_shard_and_writes_one_object_each(storage_root, instance, stac_url, loads):
    """With shard_cells, a chunk partition maps one job per shard (not per cell) and stores one object per shard:
    the run's files metadata counts shards, every region complete, the region checks pass."""
    from gnt_assets.io_managers.geoparquet import read_table

    counts, _ = loads
    resources = {**resources_for_profile("local"), "sentinel_stac": LocalSentinelStac(url=stac_url)}
    tiles = {"name": "tiles", "generator": "square", "d": 240, "res_m": 20.0, "chunk_km": 0.96, "shard_cells": 2}
    config = {"ops": {"sentinel_aoi": {"config": {"bbox": list(DEMO_BBOX)}}, "sentinel_grid": {"config": {"grids": [tiles]}}}}
    dg.materialize(ASSETS, selection=["sentinel_aoi", "sentinel_grid"], instance=instance, resources=resources, run_config=config)
    table = read_table(chunk_runs.grid_table_path(resources["storage"]))
    chunk = table["chunk"].iloc[0]
    instance.add_dynamic_partitions("sentinel_chunk", [chunk])
    places = chunk_runs.partition_cells(table, chunk)
    shards = list(places)
    assert all(p.layout.shard_px == 2 * 12 for p in places.values()) and all("_s" in s for s in shards)
    result = dg.materialize(ASSETS, selection=["sentinel_mosaic"], partition_key=_key(MONTH, chunk), instance=instance,
                            resources=resources, run_config=FAST_RETRIES)
    assert result.success and set(counts) == set(shards)
    assert result.asset_materializations_for_node("sentinel_mosaic")[0].metadata["files"].value == len(shards)
    assert all(_complete(resources["storage"], table, chunk))
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["region_written"] and checks["reflectance_plausible"] and checks["scenes_found"]
