"""Mining at world scale (issue 13, "Scale proof"): 45,000 generated mine polygons through the real code paths
of gnt_assets.mining, every figure printed beside its goal.

The polygons have the Maus et al. spread: a few countries with thousands of mines in districts, about forty with
hundreds, a long tail of countries with a handful, mines of a few hundred metres (lognormal), and some near and
across the antimeridian (Fiji, Chukotka; rings drawn from 179.97 to -179.98, which validation unwraps and splits).

1. plan: ``validate_polygons`` -> ``cluster_country`` per country -> ``export_specs`` + ``route_for`` for every
   cluster and each of the 41 years 1984-2024 (goal < 60 s); cluster-years, exports per route; then the ledgers
   (``write_ledger``, one per country-year, every export QUEUED) as the exports asset would first write them.
2. sensor: two ``gee_export_sensor`` ticks (``build_sensor_context`` on ``dg.instance_for_test``) over those ledgers,
   ``--in-flight`` Drive tasks RUNNING on ``gnt_assets.mining.local.earthengine_server`` (the loopback server
   speaking the Earth Engine REST API) to the real ``GoogleEarthEngine`` resource (earthengine-api); 10 % of them
   have finished before each tick, so the tick also resubmits failures and submits queued exports into the freed
   slots (goal < 30 s each).
3. throughput: ``compute_direct`` (the bounded computePixels pool) for ``--direct`` direct exports against the
   loopback server answering each computePixels after ``--latency`` s: requests/s beside pool size / latency.
4. objects: the world's region stores, from the layout ``create_region`` writes (chunks or shards per tile, the
   fixed metadata objects, one completion marker per written cluster) x country-years.
5. memory: peak RSS of ``training_tiles`` and writing its pack (``TensorPack.write``) for the largest generated
   country-year, in a fresh process (goal < 2 GB). Building its full region store takes far more than a few minutes
   here, so the run uses ``--tile-sample`` tiles of it at two sizes: the tiles are spooled to disk as they are cut, so
   the peak should be flat; it is projected linearly to the country-year's tile count from the growth between the two
   (the index rows, a few hundred bytes a tile), said so in the output.

Usage: python benchmarks/mining_scale.py [--mines 45000] [--years 41] [--in-flight 5000] [--direct 200]
       [--workers 20] [--latency 1.0] [--tile-sample 600] [--skip plan,sensor,throughput,objects,memory]
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import pstats
import resource
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from upath import UPath

from gnt_assets.core.worldgrid import WORLD
from gnt_assets.mining.clusters import cluster_country
from gnt_assets.mining.exports import (
    ExportRecord,
    export_specs,
    ledger_path,
    ledger_paths,
    read_ledger,
    route_for,
    write_ledger,
)
from gnt_assets.mining.local.earthengine_server import earthengine_server
from gnt_assets.mining.polygons import validate_polygons

YEARS = range(1984, 2025)
PLAN_GOAL_S, TICK_GOAL_S, MEMORY_GOAL_GB = 60.0, 30.0, 2.0
# (ISO3, mines, west, south, east, north): where the generated districts lie
BIG = [("CHN", 5200, 85, 22, 122, 45), ("USA", 4600, -122, 30, -78, 48), ("AUS", 3900, 115, -35, 150, -18),
       ("RUS", 3300, 40, 50, 140, 68), ("IDN", 2600, 96, -8, 140, 4), ("BRA", 2400, -70, -28, -36, 0),
       ("CAN", 1900, -125, 45, -65, 60), ("IND", 1500, 70, 10, 88, 30), ("ZAF", 1300, 18, -34, 32, -23),
       ("MEX", 1000, -115, 16, -90, 31)]
SITE_POLYGONS = 3.5  # polygons per mine site, on average
MEDIUM = ["PER", "CHL", "COL", "GHA", "COD", "KAZ", "MNG", "TUR", "IRN", "PHL", "UKR", "POL", "DEU", "ESP", "ZMB",
          "TZA", "ZWE", "BOL", "ARG", "VEN", "MYS", "VNM", "MMR", "PNG", "NGA", "MLI", "BFA", "GIN", "SDN", "UZB"]


def generate(n: int = 45_000, seed: int = 13) -> gpd.GeoDataFrame:
    """Mine polygons in the Maus et al. columns, ``n`` in all (the tail takes what the big countries leave)."""
    rng = np.random.default_rng(seed)
    scale = n / 45_000
    countries = [(c, int(k * scale), (w, s, e, no)) for c, k, w, s, e, no in BIG]
    for i, code in enumerate(MEDIUM):  # about 240 mines each, boxes of 8 x 6 degrees around the world
        lon, lat = -170 + (i * 47) % 330, -40 + (i * 23) % 90
        countries.append((code, int(rng.integers(120, 360) * scale), (lon, lat, lon + 8, lat + 6)))
    tail = sorted({"FJI", "NZL", "BWA", "NAM", "KEN", "ETH", "NOR", "SWE", "FIN", "FRA", "ITA", "GRC", "MAR", "EGY", "SAU",
                   "PAK", "AFG", "LAO", "KHM", "THA", "JPN", "KOR", "ECU", "GUY", "SUR", "CUB", "DOM", "HND", "GTM", "NIC",
                   "MOZ", "MDG", "AGO", "CMR", "GAB", "CIV", "SEN", "MRT", "NER", "TCD", "ROU", "BGR", "SRB", "HUN", "CZE",
                   "SVK", "AUT", "CHE", "GBR", "IRL", "PRT", "ISL", "GRL", "NCL", "SLB", "VUT", "TON", "WSM", "KIR", "TUV"})
    left = max(0, n - sum(k for _, k, _ in countries) - 120)  # 100 at the antimeridian and 20 duplicates come on top
    weights = rng.pareto(1.2, len(tail)) + 0.2
    counts = np.floor(left * weights / weights.sum()).astype(int)
    counts[0] += left - counts.sum()
    for i, (code, k) in enumerate(zip(tail, counts, strict=True)):
        lon, lat = -175 + (i * 61) % 340, -45 + (i * 37) % 100
        box = (177.8, -18.5, 179.9, -16.0) if code == "FJI" else (172.0, -46.0, 178.5, -35.0) if code == "NZL" else (lon, lat, lon + 4, lat + 3)
        countries.append((code, int(k), box))
    rows_iso, rows_geom = [], []
    # the antimeridian first (so a smaller --mines keeps it): Chukotka and Fiji mines on both sides of 180,
    # some drawn across it as one ring from 179.9x to -179.9x
    for code, lat, count in (("RUS", 66.0, 60), ("FJI", -16.8, 40)):
        for k in range(count):
            x, y, s = rng.uniform(179.7, 180.3), lat + rng.normal(0, 0.2), rng.lognormal(np.log(0.004), 0.5)
            x = 180 - s / 2 if k < 8 else x  # eight of each drawn across
            if x < 180 < x + s:
                rows_geom.append(shapely.Polygon([(x, y), (x + s - 360, y), (x + s - 360, y + s), (x, y + s)]))
            else:
                rows_geom.append(_mine(rng, x - 360 if x >= 180 else x, y, s))
            rows_iso.append(code)
    for code, k, (west, south, east, north) in countries:
        # a mine site is drawn as a few adjacent polygons (pit, dumps, tailings): sites in districts
        sites = max(1, int(k / SITE_POLYGONS))
        districts = max(1, sites // 12)
        centres = np.c_[rng.uniform(west, east, districts), rng.uniform(south, north, districts)]
        which = rng.integers(0, districts, sites)
        spread = rng.uniform(0.05, 0.4, districts)[which]
        site_x = centres[which, 0] + rng.normal(0, 1, sites) * spread
        site_y = np.clip(centres[which, 1] + rng.normal(0, 1, sites) * spread, -80, 80)
        site = rng.integers(0, sites, k)
        x = site_x[site] + rng.normal(0, 0.003, k)
        y = site_y[site] + rng.normal(0, 0.003, k)
        size = rng.lognormal(np.log(0.003), 0.7, k)
        for xi, yi, si in zip(x, y, size, strict=True):
            rows_iso.append(code)
            rows_geom.append(_mine(rng, float(np.clip(xi, -179.99, 179.99 - si)), float(yi), float(si)))
    for i in rng.choice(len(rows_geom), 20, replace=False):  # exact duplicates, rejected by row
        rows_iso.append(rows_iso[i])
        rows_geom.append(rows_geom[i])
    frame = gpd.GeoDataFrame({"ISO3_CODE": rows_iso, "COUNTRY_NAME": rows_iso}, geometry=rows_geom, crs="EPSG:4326")
    frame["AREA"] = shapely.area(frame.geometry.to_numpy()) * 12321.0  # km2 near the equator, as the file would carry it
    return frame


def _mine(rng: np.random.Generator, lon: float, lat: float, size: float) -> shapely.Polygon:
    angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
    radius = size / 2 * rng.uniform(0.6, 1.0, 7)
    return shapely.Polygon(np.c_[lon + size / 2 + radius * np.cos(angles), lat + size / 2 + radius * np.sin(angles)])


def _verdict(value: float, goal: float) -> str:
    return "meets" if value < goal else "MISSES"


def plan(frame: gpd.GeoDataFrame, years: range) -> tuple[dict, dict]:
    """Clusters per country and the records of every country-year, timed step by step as the pipeline runs them."""
    print(f"1. Planning every export for {len(years)} years ({years.start}-{years.stop - 1})")
    start = time.perf_counter()
    checked = validate_polygons(frame, "generated.gpkg")
    validate_s = time.perf_counter() - start
    mines = checked.valid
    countries = sorted(mines["ISO3_CODE"].unique())
    start = time.perf_counter()
    clusters = {c: cluster_country(mines, c) for c in countries}
    cluster_s = time.perf_counter() - start
    start = time.perf_counter()
    plans, routes = {}, Counter()
    for country, table in clusters.items():
        rows = list(table.itertuples())
        for year in years:
            records = []
            for row in rows:
                for spec in export_specs(row, year):
                    route = route_for(spec)
                    routes[route] += 1
                    records.append(ExportRecord(spec=spec, route=route, state="QUEUED"))
            plans[(country, year)] = records
    specs_s = time.perf_counter() - start
    total = validate_s + cluster_s + specs_s
    n_clusters = sum(len(t) for t in clusters.values())
    across = sum(int(t["crosses_antimeridian"].sum()) for t in clusters.values())
    sizes = sorted(((len(t), c) for c, t in clusters.items()), reverse=True)
    print(f"   polygons {len(frame):,}: {len(mines):,} valid, {len(checked.rejects):,} rejected, {checked.unwrapped} unwrapped across "
          f"the antimeridian; {len(countries)} countries, {n_clusters:,} clusters ({across} across the antimeridian); "
          f"largest {', '.join(f'{c} {k:,}' for k, c in sizes[:5])}")
    print(f"   cluster-years {n_clusters * len(years):,}; exports {sum(routes.values()):,} "
          f"({routes['direct']:,} direct computePixels, {routes['drive']:,} via Drive); country-years {len(plans):,}")
    print(f"   time to plan: {total:.1f} s (goal < {PLAN_GOAL_S:.0f} s: {_verdict(total, PLAN_GOAL_S)}) = validate {validate_s:.1f} s"
          f" + cluster {cluster_s:.1f} s + export specs and routes {specs_s:.1f} s")
    return clusters, plans


def write_ledgers(root: UPath, plans: dict, what: str) -> None:
    start = time.perf_counter()
    for (country, year), records in plans.items():
        write_ledger(ledger_path(root, country, year), records)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in Path(root.path, "mining", "exports").rglob("*.json"))
    print(f"   writing the {len(plans):,} ledgers ({what}): {seconds:.1f} s, {size / 1e6:,.0f} MB (setup, not measured)")


def _client(url: str, **settings):
    from gnt_assets.mining.resources import GoogleEarthEngine

    return GoogleEarthEngine(project="bench", access_token="token", api_url=url, **settings)


def sensor(root: UPath, plans: dict, in_flight: int, profile: bool) -> None:
    """One gee_export_sensor tick over every country-year's ledger, ``in_flight`` Drive tasks on the server."""
    import dagster as dg

    from gnt_assets.mining.sensors import gee_export_sensor
    from gnt_assets.resources.alerts import AlertSinksResource
    from gnt_assets.resources.storage import StorageResource

    print(f"2. gee_export_sensor tick, {in_flight:,} Drive tasks in flight on the loopback Earth Engine server")
    rng = np.random.default_rng(2)
    slots = [(key, i) for key, records in plans.items() for i in range(len(records))]
    queued = in_flight // 2
    picked = rng.choice(len(slots), in_flight + queued, replace=False)
    states = {}
    for n, slot in enumerate(picked):  # 90 % running, 8 % completed, 2 % failed since the last tick; then queued ones
        states[slots[slot]] = "QUEUED" if n >= in_flight else "SUCCEEDED" if n % 50 < 4 else "FAILED" if n % 50 == 4 else "RUNNING"
    with_drive = {key for key, _ in states}
    world = {}
    for key, records in plans.items():
        out = []
        for i, record in enumerate(records):  # direct exports are done; country-years with no Drive task are in their region
            state = states.get((key, i))
            if state is None:
                out.append(replace(record, state="COMPLETED", downloaded=key not in with_drive))
                continue
            record = replace(record, route="drive", state="QUEUED" if state == "QUEUED" else "RUNNING")
            if state != "QUEUED":
                op = _SERVER.add(record.spec.description, state, "Earth Engine memory capacity exceeded." if state == "FAILED" else "")
                record = replace(record, task_id=op["name"].rsplit("/", 1)[1])
            out.append(record)
        world[key] = out
    write_ledgers(root, world, "the sensor's world: direct exports done, Drive tasks running or queued")
    resources = {"storage": StorageResource(root=str(root)), "alerts": AlertSinksResource(),
                 "earthengine": _client(_SERVER.url, max_in_flight=in_flight)}
    ledgers = ledger_paths(root)
    start = time.perf_counter()
    for path in ledgers:
        read_ledger(path)
    read_s = time.perf_counter() - start
    profiler = cProfile.Profile() if profile else None
    cursor = None
    with dg.instance_for_test() as instance:
        for tick in ("first", "next"):  # between the two, a tenth of the running tasks finish (one in five failed)
            if tick == "next":
                running = [op_id for op_id, op in _SERVER.operations.items() if op["metadata"]["state"] in ("PENDING", "RUNNING")]
                for n, op_id in enumerate(running[::10]):
                    _SERVER.set_state(op_id, *(("FAILED", "Earth Engine memory capacity exceeded.") if n % 5 == 4 else ("SUCCEEDED",)))
            _SERVER.counts.clear()
            load = Path("/proc/loadavg").read_text().split()[0]
            with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
                start, cpu = time.perf_counter(), time.process_time()
                if profiler:
                    profiler.enable()
                result = gee_export_sensor(context)
                if profiler:
                    profiler.disable()
                tick_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
            if profiler:
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(22)
                profiler = cProfile.Profile()
            cursor = result.cursor
            changed = sum(1 for key in with_drive if read_ledger(ledger_path(root, *key)) != world[key])
            print(f"   {tick} tick {tick_s:.1f} s (goal < {TICK_GOAL_S:.0f} s: {_verdict(tick_s, TICK_GOAL_S)}; load average {load} "
                  f"at its start; {cpu_s:.1f} s of CPU, the loopback server's included) over {len(ledgers):,} ledgers ({len(with_drive):,} with Drive tasks); "
                  f"{len(result.run_requests)} region runs requested; {result.skip_reason.skip_message if result.skip_reason else ''}")
            print(f"   requests served: {dict(sorted(_SERVER.counts.items()))}; ledgers differing from the setup's {changed:,}")
            world = {key: read_ledger(ledger_path(root, *key)) for key in with_drive}
    print(f"   reading every ledger (read_ledger, timed alone): {read_s:.1f} s")


def throughput(root: UPath, plans: dict, n: int, workers: int, latency: float) -> None:
    """compute_direct for ``n`` direct exports of the largest country-year, the server answering after ``latency``."""
    from gnt_assets.mining.pipeline import compute_direct

    print(f"3. computePixels throughput: compute_direct, pool of {workers}, {n} requests, server latency {latency:g} s each")
    (country, year), records = max(plans.items(), key=lambda item: len(item[1]))
    records = [replace(r) for r in records if r.route == "direct"]
    jobs = records[:n]
    earthengine = _client(_SLOW.url, direct_workers=workers)
    earthengine._client()  # initialized once per run, before the pool: not part of the throughput
    ledger = ledger_path(root, country, f"{year}-direct")
    write_ledger(ledger, records)
    start = time.perf_counter()
    errors = compute_direct(root, earthengine, jobs, ledger)
    seconds = time.perf_counter() - start
    rate, ideal = len(jobs) / seconds, workers / latency
    mean = np.mean([j.spec.nbytes for j in jobs]) / 1e6
    print(f"   {rate:.1f} requests/s ({seconds:.1f} s for {len(jobs)}, {len(errors)} errors; regions of {mean:.1f} MB on average, "
          f"written to disk and the {len(records):,}-record ledger updated after each); pool size / latency = {ideal:.1f}/s "
          f"({rate / ideal:.0%} of it); one request at a time would give {1 / latency:.1f}/s")


def objects(root: UPath, clusters: dict, years: int, shard_tiles: int) -> None:
    """Objects of the world's region stores from the layout create_region writes, per country x years."""
    from gnt_assets.core.worldgrid import TILE_SIZE
    from gnt_assets.core.zarr_regions import StoreLayout
    from gnt_assets.mining.regions import country_geobox, create_region, region_path

    print(f"4. Objects of the world's region stores ({len(clusters)} countries x {years} years)")
    chunks = shards = markers = fixed = 0
    per_store = []
    for country, table in clusters.items():
        specs = [spec for row in table.itertuples() for spec in export_specs(row, 2000)]
        pieces = [spec.geobox.extent.boundingbox for spec in specs]
        geobox = country_geobox([(b.left, b.bottom, b.right, b.top) for b in pieces])
        path = region_path(root, country, 2000)
        create_region(path, geobox)
        layout = StoreLayout.read(path)
        unit = layout.units["reflectance"]
        n_fixed = sum(1 for p in Path(path.path).rglob("*") if p.is_file())
        shutil.rmtree(path.path)
        tiles = np.unique(np.concatenate([np.asarray(t, dtype=np.int64).reshape(-1, 2) for t in table["tiles"]]), axis=0)
        col0, row0 = (round(v) for v in ~WORLD.affine @ (geobox.affine.c, geobox.affine.f))
        cols, rows = tiles[:, 0] * TILE_SIZE - col0, tiles[:, 1] * TILE_SIZE - row0
        n_chunks = len(np.unique(np.c_[rows // unit["latitude"], cols // unit["longitude"]], axis=0))
        side = shard_tiles * TILE_SIZE
        n_shards = len(np.unique(np.c_[rows // side, cols // side], axis=0))
        chunks, shards, markers, fixed = chunks + n_chunks, shards + n_shards, markers + len(specs), fixed + n_fixed
        per_store.append(n_chunks + len(specs) + n_fixed)
    total = (chunks + markers + fixed) * years
    print(f"   layout as written: reflectance write unit {unit['band']} x {unit['latitude']} x {unit['longitude']} "
          f"({'sharded' if layout.arrays['reflectance'].shards else 'unsharded chunks'}), one object per unit with data")
    print(f"   per year: {chunks:,} data objects + {markers:,} completion markers (one per cluster export written) + "
          f"{fixed:,} metadata/coordinate objects; largest store {max(per_store):,} objects")
    print(f"   world, {years} years: {total:,} objects ({total / len(clusters) / years:,.0f} per store); with "
          f"{shard_tiles} x {shard_tiles}-tile shards the data objects would be {shards * years:,} instead of "
          f"{chunks * years:,} (markers and metadata unchanged: {(shards + markers + fixed) * years:,} in all)")


def _tiles_peak(args) -> tuple[float, float, int, float]:
    """In a fresh process: RSS before and peak during training_tiles over the sampled clusters and the write
    of its pack (MB), tile rows, seconds."""
    path, clusters, polygons, must_touch, target = args
    from gnt_assets.mining.training_tiles import cluster_tiles, open_region, region_chunks_present, training_tiles

    region = open_region(UPath(path), "bench")
    tiles = cluster_tiles(clusters)
    before, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:  # the process's resident size every 5 ms (ru_maxrss keeps the peak of the imports)
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    pack, _ = training_tiles(region, tiles, polygons, partition="bench", year=2000,
                             chunks_present=region_chunks_present(UPath(path)), must_touch=must_touch)
    pack.write(UPath(target))
    done.set()
    sampler.join()
    return before, max(peak[0], _rss_mb()), len(pack.rows["tile_ix"]), time.perf_counter() - start


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def memory(root: UPath, clusters: dict, mines: gpd.GeoDataFrame, sample: int) -> None:
    from gnt_assets.mining.regions import country_geobox, create_region, region_path, write_cluster

    country, table = max(clusters.items(), key=lambda item: len(item[1]))
    pairs = int(table["tiles"].map(len).sum())
    world_tiles = len(np.unique(np.concatenate([np.asarray(t, dtype=np.int64).reshape(-1, 2) for t in table["tiles"]]), axis=0))
    print(f"5. Peak memory of training_tiles + writing its pack, largest country-year {country}|2000: {len(table):,} clusters, "
          f"{pairs:,} (cluster, tile) pairs, {world_tiles:,} distinct world tiles (each stored once)")
    counts = table["tiles"].map(len).to_numpy()
    take = int(np.searchsorted(np.cumsum(counts), sample)) + 1
    subset = table.iloc[:take]
    specs = [spec for row in subset.itertuples() for spec in export_specs(row, 2000)]
    path = region_path(root, country, 2000)
    pieces = [s.geobox.extent.boundingbox for s in specs]
    create_region(path, country_geobox([(b.left, b.bottom, b.right, b.top) for b in pieces]))
    start = time.perf_counter()
    for spec in specs:
        write_cluster(path, spec.geobox, np.full((7, spec.height, spec.width), 0.2, "float32"))
    build_s = time.perf_counter() - start
    polygons = list(mines.geometry)
    must_touch = np.nonzero((mines["ISO3_CODE"] == country).to_numpy())[0].tolist()
    spawn = multiprocessing.get_context("spawn")
    results = []
    for k, part in enumerate((subset.iloc[: max(1, take // 4)], subset)):
        with spawn.Pool(1) as pool:
            target = Path(root.path, "tiles", str(k))
            results.append(pool.apply(_tiles_peak, ((path.path, part, polygons, must_touch, str(target)),)))
    (b1, p1, n1, _), (b2, p2, n2, _) = results
    slope = ((p2 - b2) - (p1 - b1)) / max(n2 - n1, 1)
    projected = p2 + max(slope, 0.0) * (world_tiles - n2)
    print(f"   full size not run: its region store alone would take ~{world_tiles * 7 * 64 * 64 * 4 / 1e9:.0f} GB of chunks to build here; "
          f"sampled {len(subset)} clusters of it (region of {len(specs)} exports written in {build_s:.0f} s; load average "
          f"{Path('/proc/loadavg').read_text().split()[0]} at the end)")
    for (before, peak, n, seconds) in results:
        print(f"   {n:,} tile rows: peak RSS {peak:,.0f} MB ({peak - before:,.0f} MB over the {before:,.0f} MB before the call), "
              f"{seconds:.0f} s ({seconds / n * 1000:.0f} ms per tile, not profiled)")
    print(f"   growth {slope * 1024:,.1f} kB per tile row between the two ({n1:,} -> {n2:,} rows: {'flat' if abs(slope) * 1024 < 5 else 'NOT flat'}) "
          f"-> projected peak at {world_tiles:,} rows: {projected / 1024:,.2f} GB "
          f"(goal < {MEMORY_GOAL_GB:.0f} GB: {_verdict(projected / 1024, MEMORY_GOAL_GB)})")


_SERVER = _SLOW = None


def main() -> None:
    global _SERVER, _SLOW
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mines", type=int, default=45_000)
    parser.add_argument("--years", type=int, default=41, help="years from 1984")
    parser.add_argument("--in-flight", type=int, default=5_000, help="Drive tasks running during the sensor tick")
    parser.add_argument("--direct", type=int, default=200, help="computePixels requests for the throughput")
    parser.add_argument("--workers", type=int, default=20, help="computePixels pool size (direct_workers)")
    parser.add_argument("--latency", type=float, default=1.0, help="server-side seconds per computePixels request")
    parser.add_argument("--tile-sample", type=int, default=600, help="tile rows of the largest country-year for the memory part")
    parser.add_argument("--shard-tiles", type=int, default=16, help="shard side in tiles for the object count's comparison")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each sensor tick")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: sensor,throughput,objects,memory")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    years = range(1984, 1984 + args.years)
    frame = generate(args.mines)
    clusters, plans = plan(frame, years)
    with tempfile.TemporaryDirectory(prefix="mining-scale-") as tmp, earthengine_server(project="bench") as fast, \
            earthengine_server(project="bench", latency=args.latency, tiff_per_size=True) as slow:
        _SERVER, _SLOW = fast, slow
        root = UPath(tmp)
        if "sensor" not in skip:
            sensor(root, plans, args.in_flight, args.profile)
        if "throughput" not in skip:
            throughput(root, plans, args.direct, args.workers, args.latency)
        if "objects" not in skip:
            objects(root, clusters, args.years, args.shard_tiles)
        if "memory" not in skip:
            memory(root, clusters, validate_polygons(frame, "generated.gpkg").valid, args.tile_sample)


if __name__ == "__main__":
    main()
