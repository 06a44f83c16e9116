"""Peak RSS of one mosaic_chunk over a 6000 x 6000 px cell (20 m) from the local STAC API, loaded in windows of
WINDOW px or whole (a huge WINDOW): ``dates21`` repeats the month's 3 scenes on 7 days each, ``nowrite`` stubs the
cube write. One run per process (peak RSS is per process); a whole-cell run with 21 dates needs over 20 GB.

    .venv/bin/python benchmarks/sentinel_cell_memory.py WINDOW [nowrite] [dates21]
"""

import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

from shapely.geometry import box
from upath import UPath

from gnt_assets.sentinel import mosaic
from gnt_assets.sentinel.chunk_runs import layout_for
from gnt_assets.sentinel.cube_store import CubeStore
from gnt_assets.sentinel.grid import GridSpec, named_grid
from gnt_assets.sentinel.local import COLLECTION, DEMO_BBOX, ensure_sample_scenes, sample_item_files, stac_api_server
from gnt_assets.sentinel.stac import SceneQuery

BANDS = {b: b for b in ("red", "green", "blue", "nir")}


def repeated(search):
    """The month's scenes, each on 7 days (3 scenes: 21 dates)."""
    def many(query, modifier=None):
        out = []
        for item in search(query, modifier):
            for k in range(7):
                copy = item.clone()
                copy.id, copy.datetime = f"{item.id}-{k}", item.datetime + dt.timedelta(days=k + 7 * (item.datetime.day % 3))
                out.append(copy)
        return out
    return many


def main(window: int, flags: list[str]) -> None:
    if "dates21" in flags:
        mosaic.search_scenes = repeated(mosaic.search_scenes)
    if "nowrite" in flags:
        CubeStore.write = lambda self, *args: None
    root = Path(tempfile.mkdtemp(prefix="sentinel-cell-memory"))
    ensure_sample_scenes(root / "src")
    cells = named_grid(box(*DEMO_BBOX), "sq", "square", GridSpec(d=120000, target_crs="EPSG:32610", res_m=20))
    layout, chunk = layout_for(cells), cells["chunk"].iloc[0]
    store = CubeStore(UPath(root / "cube.zarr"))
    store.ensure(layout, ["2024-06-01"], list(BANDS))
    with stac_api_server(*sample_item_files(root / "src")) as url:
        job = mosaic.ChunkJob(chunk=chunk, month="2024-06-01", query=SceneQuery(url, COLLECTION, DEMO_BBOX, dt.date(2024, 6, 1)),
                              band_assets=BANDS, scl_asset="scl", layout=layout, cube=store, window_px=window)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        result = mosaic.mosaic_chunk(job)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cell {tuple(layout.cell_geobox(chunk).shape)} window {window}: {result.scenes} scenes, success {result.success}, "
          f"peak RSS {peak:.0f} MiB (goal < 4096 MiB, a worker's limit; {before:.0f} MiB before the chunk), "
          f"{time.perf_counter() - started:.1f} s {result.durations}")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
