"""Mine clustering: ours (STRtree + connected components) vs the seed's all-pairs overlap loop.

45,000 generated mine polygons (Maus et al. scale: 44,929), a few hundred metres
each, grouped in districts over 30 countries. The seed's pairwise method is timed
on a subset and scaled by (n / subset)^2 per country; both must give the same
clusters on the subset.

    .venv/bin/python benchmarks/clustering.py
"""

from __future__ import annotations

import time

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse.csgraph import connected_components

from gnt_assets.mining.clusters import BUFFER_DEGREES, OVERLAP_SHARE, SCHEMA, cluster_country, cluster_labels, envelopes
from gnt_assets.mining.polygons import ISO3_CODES

COUNTRIES = sorted(ISO3_CODES)[:30]


def generate(n: int = 45_000, seed: int = 7) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    country = rng.choice(len(COUNTRIES), n)
    district = rng.integers(0, 40, n)
    centre_x = -170 + country * 11 + (district % 8) * 1.2
    centre_y = -50 + (district // 8) * 3.0 + country % 5
    x = centre_x + rng.normal(0, 0.15, n)
    y = centre_y + rng.normal(0, 0.15, n)
    size = rng.lognormal(np.log(0.004), 0.6, n)
    geometries = shapely.box(x, y, x + size, y + size * rng.uniform(0.5, 1.5, n))
    return gpd.GeoDataFrame({"mine_id": np.arange(n), "ISO3_CODE": np.array(COUNTRIES)[country]}, geometry=geometries, crs=4326)


def seed_pairwise(geometries: np.ndarray, buffer: float = BUFFER_DEGREES, share: float = OVERLAP_SHARE) -> np.ndarray:
    """The seed: buffered envelopes, intersection area of every pair, overlap matrix, connected components."""
    env = [g.buffer(buffer, cap_style="square", join_style="mitre").envelope for g in geometries]
    n = len(env)
    matrix = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            if i != j and env[i].intersection(env[j]).area > share * env[i].area:
                matrix[i, j] = True
    return connected_components(matrix, directed=False)[1]


def groups(labels: np.ndarray) -> set[frozenset]:
    return {frozenset(np.nonzero(labels == label)[0].tolist()) for label in np.unique(labels)}


def main() -> None:
    mines = generate()
    start, cpu = time.perf_counter(), time.process_time()
    tables = [cluster_country(mines, country) for country in COUNTRIES]
    ours_full, ours_full_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    for table in tables:  # what the clusters asset's blocking check does on each stored table
        SCHEMA.validate(pd.DataFrame(table.drop(columns="geometry")))
    schema, schema_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    for country in COUNTRIES:
        part = mines[mines["ISO3_CODE"] == country]
        cluster_labels(envelopes(shapely.bounds(part.geometry.to_numpy()), BUFFER_DEGREES))
    ours_rule, ours_rule_cpu = time.perf_counter() - start, time.process_time() - cpu

    subset = mines[mines["ISO3_CODE"] == COUNTRIES[0]].iloc[:400]
    start = time.perf_counter()
    theirs = seed_pairwise(subset.geometry.to_numpy())
    pairwise_subset = time.perf_counter() - start
    per_country = mines["ISO3_CODE"].value_counts().to_numpy()
    pairwise_scaled = pairwise_subset * float(np.sum((per_country / len(subset)) ** 2))
    ours_subset = cluster_labels(envelopes(shapely.bounds(subset.geometry.to_numpy()), BUFFER_DEGREES))
    same = groups(theirs) == groups(ours_subset)

    print(f"mines: {len(mines)} in {len(COUNTRIES)} countries")
    print(f"ours, clustering rule (STRtree + components): {ours_rule:.3f} s wall, {ours_rule_cpu:.3f} s CPU")
    print(f"ours, full clusters table (footprints, ids, tiles, regions): {ours_full:.3f} s wall, {ours_full_cpu:.3f} s CPU")
    print(f"pandera schema validation of the 30 tables (done by the asset check, not counted above): {schema:.3f} s wall, {schema_cpu:.3f} s CPU")
    print(f"seed pairwise on {len(subset)} mines: {pairwise_subset:.3f} s -> scaled to 45k (quadratic per country): {pairwise_scaled:.1f} s")
    print(f"speed-up (rule): {pairwise_scaled / ours_rule:.0f}x; (full table): {pairwise_scaled / ours_full:.0f}x")
    print(f"same clusters on the subset: {same} ({len(groups(theirs))} clusters)")


if __name__ == "__main__":
    main()
