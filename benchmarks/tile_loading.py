"""Random-access tile loading: MiningTiles + DataLoader vs raw np.memmap vs TorchGeo, and tile writing.

All in one run on the same generated tiles (7 x 64 x 64 float32 features, labels, valid mask):

* MiningTiles through a DataLoader (batch 64, random order) with 0 and 2 workers, four ways:
  "before" (the per-sample path that preceded batched fetching: views of the mapping, stacked by
  the default collate), ``__getitems__`` under the default collate, ``__getitems__`` handed over as
  is in fresh shared memory per batch, and "after" (``MiningTiles.loader``: with workers, batches
  cross through shared-memory slots made once and are copied out in the main process);
  goals: 2 workers >= 0.5x raw memmap, 0 workers unchanged or better than before;
* raw ``np.memmap`` fancy indexing of the same packed file (the ceiling);
* TorchGeo ``RasterDataset`` + ``RandomGeoSampler`` over the same tiles written as
  64x64 GeoTIFFs on the world grid (goal: MiningTiles >= 100x);
* tiles written per second: ``write_packed`` vs a plain ``np.save`` of the same arrays.

TorchGeo is installed only into a throwaway folder (``.gnt/bench/torchgeo``) with
``pip --no-deps``, never into the project venv, so it cannot pull another torch.
Its hard dependency torchvision ships only CUDA builds on PyPI whose compiled ops
do not load against this torch (2.13.0+cpu), so torchvision is replaced there by
an import stub; RasterDataset and RandomGeoSampler never call torchvision.

Readers are timed in turn, round after round, and each is given as the median of its ratios to
the same round's memmap rate, so load from other jobs on a shared machine falls on all alike; the
load average is printed beside the figures.

Run: ``.venv/bin/python benchmarks/tile_loading.py [--tiles 1024] [--rounds 5] [--skip-torchgeo]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from upath import UPath

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gnt_assets.core.packed_tensors import write_packed  # noqa: E402
from gnt_assets.io_managers.mmap_tensors import tensor_folder  # noqa: E402
from gnt_assets.mining.dataset import ASSET_KEY, MiningTiles  # noqa: E402
from gnt_assets.mining.training_tiles import FIELDS, world_tile  # noqa: E402

TORCHGEO_DIR = REPO / ".gnt" / "bench" / "torchgeo"
TORCHGEO_PACKAGES = ["torchgeo==0.8.1", "kornia", "kornia-rs", "einops", "matplotlib", "cycler", "kiwisolver", "fonttools", "contourpy", "pyparsing"]
TORCHVISION_STUB = '''
"""Import stub: torchgeo imports torchvision at module level; these benchmarks never call it."""
import importlib.abc, importlib.machinery, sys, types

def _refuse(*args, **kwargs):
    raise RuntimeError("torchvision is stubbed in this benchmark")

class _Module(types.ModuleType):
    __path__ = []
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__init__": _refuse, "__call__": _refuse})
        setattr(self, name, value)
        return value

class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
    def create_module(self, spec):
        return _Module(spec.name)
    def exec_module(self, module):
        pass

sys.meta_path.insert(0, _Finder())
'''
TORCHGEO_RUN = '''
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torchvision_stub  # noqa: F401
import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset, stack_samples
from torchgeo.samplers import RandomGeoSampler

class Tiles(RasterDataset):
    filename_glob = "*.tif"
    is_image = True

dataset = Tiles(paths=sys.argv[2])
samples = int(sys.argv[3])
sampler = RandomGeoSampler(dataset, size=64, length=samples)
loader = DataLoader(dataset, batch_size=64, sampler=sampler, collate_fn=stack_samples, num_workers=0)
start = time.perf_counter()
seen = 0
for batch in loader:
    seen += batch["image"].shape[0]
    shape = tuple(batch["image"].shape[1:])
print(json.dumps({"samples": seen, "seconds": time.perf_counter() - start, "shape": shape}))
'''


def make_tiles(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.uniform(0, 0.4, size=(count, *FIELDS[0].shape)).astype("<f4")
    labels = (rng.random((count, *FIELDS[1].shape)) > 0.8).astype(np.uint8)
    return {"features": features, "labels": labels, "valid": np.ones((count, *FIELDS[2].shape), np.uint8)}


def tile_positions(count: int) -> list[tuple[int, int]]:
    side = int(np.ceil(np.sqrt(count)))
    return [(12000 + i % side, 6000 + i // side) for i in range(count)]


def time_writes(root: Path, arrays: dict[str, np.ndarray], positions) -> tuple[float, float]:
    count = len(positions)
    rows = {"tile_ix": [p[0] for p in positions], "tile_iy": [p[1] for p in positions], "year": [2020] * count,
            "cluster_id": ["c"] * count, "geometry_hash": ["h"] * count}
    start = time.perf_counter()
    write_packed(UPath(root / "packed"), FIELDS, arrays, rows, {"bands": 7})
    packed = time.perf_counter() - start
    (root / "npy").mkdir()
    start = time.perf_counter()
    for name, array in arrays.items():
        with open(root / "npy" / f"{name}.npy", "wb") as handle:
            np.save(handle, array)
            handle.flush()
            os.fsync(handle.fileno())
    plain = time.perf_counter() - start
    return count / packed, count / plain


class PerSampleTiles(torch.utils.data.Dataset):
    """The loading path before batched fetching, kept as the "before" row: each sample is a view of
    the ``torch.from_file`` mapping and the default collate stacks the views (in a worker, into
    shared memory). Same mapping and layout as ``MiningTiles``."""

    def __init__(self, folder: UPath) -> None:
        self.folder, self.fields = folder, None
        from gnt_assets.core.packed_tensors import open_packed

        self.count = open_packed(folder).count

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict:
        return {**self.__dict__, "fields": None}

    def __getitem__(self, i: int):
        if self.fields is None:
            from gnt_assets.core.packed_tensors import open_packed

            index = open_packed(self.folder)
            records = index.torch_records()
            self.fields = {}
            for field in index.fields:
                offset = index.record_dtype.fields[field.name][1]
                dtype = torch.from_numpy(np.empty(0, field.dtype)).dtype
                self.fields[field.name] = records[:, offset : offset + field.nbytes].view(dtype).view(index.count, *field.shape)
        return self.fields["features"][i], self.fields["labels"][i]


def make_loader(dataset, samples: int, workers: int, how: str) -> DataLoader:
    """Batch 64 over the same seeded random sampler. ``how``: "loader" (``MiningTiles.loader``: with workers,
    batches cross through shared-memory slots made once), "as_is" (the batch handed over as is, in fresh
    shared memory per batch), or "default" (a plain ``DataLoader`` with the default collate)."""
    sampler = RandomSampler(dataset, num_samples=samples, generator=torch.Generator().manual_seed(1))
    options = {"sampler": sampler, "num_workers": workers, "persistent_workers": workers > 0}
    if how == "loader":
        return dataset.loader(64, **options)
    if how == "as_is":
        return DataLoader(dataset, batch_size=64, collate_fn=dataset.collate, **options)
    return DataLoader(dataset, batch_size=64, **options)


def rate_pass(loader: DataLoader) -> float:
    """Samples/s of one pass over the loader (the batch's tensors touched, as training would)."""
    start = time.perf_counter()
    seen = 0
    for images, labels in loader:
        seen += images.shape[0] + 0 * int(images[:, 0, 0, 0].sum() + labels[:, 0, 0, 0].sum())
    return seen / (time.perf_counter() - start)


def rate_memmap(folder: UPath, samples: int) -> float:
    from gnt_assets.core.packed_tensors import open_packed

    records = open_packed(folder).memmap()
    rng = np.random.default_rng(1)
    order = rng.integers(0, len(records), samples)
    start = time.perf_counter()
    seen = 0
    for batch in np.split(order, range(64, samples, 64)):
        picked = records[batch]
        features, labels = np.ascontiguousarray(picked["features"]), np.ascontiguousarray(picked["labels"])
        seen += len(features) + 0 * labels.size
    return seen / (time.perf_counter() - start)


def write_geotiffs(folder: Path, arrays: dict[str, np.ndarray], positions) -> None:
    import rasterio

    folder.mkdir()
    for i, (ix, iy) in enumerate(positions):
        geobox = world_tile(ix, iy)
        with rasterio.open(
            folder / f"{ix}_{iy}.tif", "w", driver="GTiff", width=64, height=64, count=7, dtype="float32",
            crs="EPSG:4326", transform=geobox.affine,
        ) as dst:
            dst.write(arrays["features"][i])


def rate_torchgeo(tiffs: Path, samples: int) -> tuple[float | None, str]:
    TORCHGEO_DIR.mkdir(parents=True, exist_ok=True)
    if not (TORCHGEO_DIR / "torchgeo").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(TORCHGEO_DIR), *TORCHGEO_PACKAGES], check=True)
    (TORCHGEO_DIR / "torchvision_stub.py").write_text(TORCHVISION_STUB)
    done = subprocess.run(
        [sys.executable, "-c", TORCHGEO_RUN, str(TORCHGEO_DIR), str(tiffs), str(samples)], capture_output=True, text=True
    )
    if done.returncode != 0:
        return None, done.stderr.strip().splitlines()[-1]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["samples"] / result["seconds"], f"{result['samples']} samples of shape {result['shape']}"


def load_average() -> str:
    return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=64 * 48)
    parser.add_argument("--rounds", type=int, default=5, help="timed passes per reader, taken in turn")
    parser.add_argument("--torchgeo-samples", type=int, default=256)
    parser.add_argument("--skip-torchgeo", action="store_true")
    args = parser.parse_args()
    loaded_before = load_average()
    with tempfile.TemporaryDirectory(prefix="gnt-tile-bench-") as tmp:
        root = Path(tmp)
        arrays = make_tiles(args.tiles)
        positions = tile_positions(args.tiles)
        packed_rate, npy_rate = time_writes(root, arrays, positions)
        folder = tensor_folder(UPath(root / "store"), ASSET_KEY, "ZAF|2020")
        rows = {"tile_ix": [p[0] for p in positions], "tile_iy": [p[1] for p in positions], "year": [2020] * args.tiles,
                "cluster_id": ["c"] * args.tiles, "geometry_hash": ["h"] * args.tiles}
        write_packed(folder, FIELDS, arrays, rows, {})
        dataset, before = MiningTiles(folders=[folder]), PerSampleTiles(folder)
        readers = {"memmap": lambda: rate_memmap(folder, args.samples)}
        for workers in (0, 2):
            for label, data, how in (("before", before, "default"), ("default", dataset, "default"), ("as_is", dataset, "as_is"),
                                     ("after", dataset, "loader")):
                loader = make_loader(data, args.samples, workers, how)
                rate_pass(loader)  # starts the workers, maps the file, warms the page cache
                readers[f"{label}{workers}"] = lambda loader=loader: rate_pass(loader)
        rate_memmap(folder, 640)
        # Turn about: every reader once per round, so load from other jobs falls on all of them alike;
        # each round's rates are divided by that round's memmap rate, and the medians reported.
        rates: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(args.rounds):
            for name, measure in readers.items():
                rates[name].append(measure())
        ratios = {name: statistics.median(r / m for r, m in zip(rates[name], rates["memmap"], strict=True)) for name in readers}
        if args.skip_torchgeo:
            torchgeo, note = None, "skipped (--skip-torchgeo)"
        else:
            write_geotiffs(root / "tiffs", arrays, positions)
            torchgeo, note = rate_torchgeo(root / "tiffs", args.torchgeo_samples)
    best = max(statistics.median(rates[name]) for name in readers if name != "memmap")
    print(f"tiles: {args.tiles} x {FIELDS[0].shape} float32 + labels + valid; random samples per pass: {args.samples}; batch 64")
    print(f"{args.rounds} rounds, readers in turn, ratio = median over rounds of (rate / same round's memmap rate)")
    print(f"machine: {os.cpu_count()} cores, {loaded_before} at start, {load_average()} at end")
    memmap = statistics.median(rates["memmap"])
    print(f"raw np.memmap fancy indexing                        {memmap:10,.0f} samples/s")
    goals = {"0": "goal: unchanged or better than before", "2": "goal: >= 0.50x"}
    for workers in ("0", "2"):
        for name, label in (("before", "before: per-sample views, default collate"), ("default", "__getitems__, default collate"),
                            ("as_is", "__getitems__, batch as is, fresh shm"), ("after", "after: MiningTiles.loader")):
            key = f"{name}{workers}"
            goal = goals[workers] if name == "after" else ""
            print(f"{workers} workers, {label:42} {statistics.median(rates[key]):10,.0f} samples/s  {ratios[key]:5.2f}x memmap  {goal}")
    if torchgeo is None:
        print(f"TorchGeo RasterDataset + RandomGeoSampler: could not run ({note})")
    else:
        print(f"TorchGeo RasterDataset+RandomGeoSampler {torchgeo:8,.0f} samples/s   ({note}); MiningTiles best = {best / torchgeo:,.0f}x TorchGeo")
    print(f"tiles written: write_packed {packed_rate:10,.0f} tiles/s vs np.save {npy_rate:10,.0f} tiles/s   {packed_rate / npy_rate:5.2f}x")


if __name__ == "__main__":
    main()
