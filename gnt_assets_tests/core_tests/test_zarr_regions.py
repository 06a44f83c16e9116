"""Shared region stores: created once, written region by region, never a shared chunk."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_zeros
from upath import UPath

from gnt_assets.core import zarr_regions, zarr_shards
from gnt_assets.core.zarr_regions import (
    CODEC_PIPELINES,
    StoreLayout,
    ZarrLayoutError,
    append_along,
    codec_pipeline_name,
    create_store,
    open_store,
    region_status,
    store_exists,
    write_region,
    writing_with,
)
from gnt_assets.core.zarr_shards import shard_plan, write_whole_shards

GEOBOX = GeoBox.from_bbox((10.0, 40.0, 10.0 + 128 * 0.001, 40.0 + 64 * 0.001), crs="EPSG:4326", resolution=0.001)
ENCODING = {"value": {"chunks": (1, 32, 32), "shards": (1, 32, 64)}}


def template(times=(0, 1)) -> xr.Dataset:
    layer = xr_zeros(GEOBOX, dtype="float32", chunks=(64, 128))
    value = xr.concat([layer] * len(times), dim="time").assign_coords(time=list(times))
    value.attrs.update(units="1", long_name="test value")
    return value.to_dataset(name="value")


def region(time: int, x_start: int, width: int, fill: float) -> xr.Dataset:
    full = template().isel(time=[time]).compute()
    part = full.isel(longitude=slice(x_start, x_start + width))
    return part.assign(value=part.value + fill)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> UPath:
    if request.param == "local":
        return UPath(tmp_path) / "cube.zarr"
    return request.getfixturevalue("s3_root") / "cube.zarr"


def test_regions_round_trip_and_never_touch_each_other(store):
    create_store(store, template(), encoding=ENCODING)
    create_store(store, template(), encoding=ENCODING)  # a second partition racing: no-op
    written = write_region(store, region(0, 0, 64, 1.0))
    assert written["longitude"] == slice(0, 64)
    before = store.fs.cat_file(f"{store.path}/value/c/0/0/0")
    write_region(store, region(0, 64, 64, 2.0))
    assert store.fs.cat_file(f"{store.path}/value/c/0/0/0") == before
    write_region(store, region(0, 64, 64, 2.0))  # idempotent
    data = open_store(store).value.isel(time=0).values
    assert np.all(data[:, :64] == 1.0) and np.all(data[:, 64:] == 2.0)
    assert np.isnan(open_store(store).value.isel(time=1).values).all()
    status = region_status(store, {"time": slice(0, 1), "longitude": slice(0, 64)})
    assert status.complete and status.expected == 2
    assert not region_status(store, {"time": slice(1, 2), "longitude": slice(0, 64)}).complete


def test_geobox_round_trips(store):
    create_store(store, template(), encoding=ENCODING)
    assert open_store(store).odc.geobox == GEOBOX


def test_misaligned_region_is_refused(store):
    create_store(store, template(), encoding=ENCODING)
    with pytest.raises(ZarrLayoutError, match="whole write units"):
        write_region(store, region(0, 32, 64, 1.0))


def test_incompatible_template_is_refused(tmp_path):
    store = UPath(tmp_path) / "cube.zarr"
    create_store(store, template(), encoding=ENCODING)
    other = template().assign(value=lambda d: d.value.astype("float64"))
    with pytest.raises(ZarrLayoutError, match="float64"):
        create_store(store, other)


def test_append_grows_the_axis_without_touching_written_regions(tmp_path):
    store = UPath(tmp_path) / "cube.zarr"
    create_store(store, template(), encoding=ENCODING)
    write_region(store, region(1, 0, 64, 5.0))
    append_along(store, "time", template(times=(0, 1, 2)))
    append_along(store, "time", template(times=(0, 1, 2)))  # idempotent
    cube = open_store(store)
    assert list(cube.time.values) == [0, 1, 2]
    assert np.all(cube.value.isel(time=1).values[:, :64] == 5.0)


def _create(path: str, start) -> None:
    start.wait(60)
    create_store(UPath(path), template(), encoding=ENCODING)


def test_concurrent_creation_from_several_processes(tmp_path):
    """Writers released together: each sees no store, a complete one, or wins; none sees half of one."""
    path = str(tmp_path / "cube.zarr")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    workers = [context.Process(target=_create, args=(path, start)) for _ in range(4)]
    for worker in workers:
        worker.start()
    seen = set()
    while any(w.is_alive() for w in workers):  # a reader looking on meanwhile sees all or nothing
        if store_exists(UPath(path)):
            seen.add(tuple(sorted(zarr.open_group(path, mode="r").array_keys())))
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert len(seen) == 1 and "value" in seen.pop()
    assert not [p.name for p in tmp_path.iterdir() if p.name != "cube.zarr"]  # no staged copies left
    assert open_store(UPath(path)).sizes["longitude"] == 128


def _append(path: str, time: int, start) -> None:
    start.wait(60)
    append_along(UPath(path), "time", template(times=(time,)))


def test_concurrent_appends_keep_every_label_once(tmp_path):
    """Partitions of different new months grow the same axis at once: each label lands exactly once."""
    path = str(tmp_path / "cube.zarr")
    create_store(UPath(path), template(times=(0,)), encoding=ENCODING)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    workers = [context.Process(target=_append, args=(path, time, start)) for time in (1, 2, 3, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert sorted(open_store(UPath(path)).time.values.tolist()) == [0, 1, 2, 3]


def test_regions_are_placed_by_decoded_time_and_string_labels(tmp_path):
    """Placement reads labels from zarr metadata alone: CF-encoded days and band names must still match."""
    days = np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[ns]")
    bands = np.array(["red", "nir"])
    empty = xr.Dataset(
        {"value": (("time", "band", "y"), np.zeros((3, 2, 4), "float32"))},
        coords={"time": days, "band": bands, "y": np.arange(4.0)},
    )
    store = UPath(tmp_path) / "days.zarr"
    create_store(store, empty.chunk({"time": 1}), encoding={"value": {"chunks": (1, 2, 4)}})
    day = empty.isel(time=[1]) + 3.0
    assert write_region(store, day) == {"time": slice(1, 2), "band": slice(0, 2), "y": slice(0, 4)}
    stored = open_store(store)
    assert stored.value.sel(time="2020-01-02").values.tolist() == [[3.0] * 4] * 2
    assert region_status(store, {"time": slice(1, 2)}).complete
    with pytest.raises(ZarrLayoutError, match="not in the store"):
        write_region(store, empty.assign_coords(time=days + np.timedelta64(9, "D")).isel(time=[0]))


@pytest.mark.parametrize("compressors", [None, "auto"], ids=["uncompressed", "zstd"])
def test_stores_written_with_zarrs_read_with_the_default_pipeline(tmp_path, compressors):
    encoding = {"value": {**ENCODING["value"], "compressors": compressors}}
    stores = {}
    for pipeline in ("zarrs", "default"):
        stores[pipeline] = UPath(tmp_path) / f"{pipeline}.zarr"
        create_store(stores[pipeline], template(), encoding=encoding)
        write_region(stores[pipeline], region(0, 0, 64, 1.0), codec_pipeline=pipeline)
        write_region(stores[pipeline], region(1, 64, 64, 2.0), codec_pipeline=pipeline)
    expected = np.full((2, 64, 128), np.nan, "float32")
    expected[0, :, :64], expected[1, :, 64:] = 1.0, 2.0
    with zarr.config.set({"codec_pipeline.path": CODEC_PIPELINES["default"]}):
        array = zarr.open_array((stores["zarrs"] / "value").path, mode="r")
        assert type(array._async_array.codec_pipeline).__name__ == "BatchedCodecPipeline"
        np.testing.assert_array_equal(array[...], expected)
        np.testing.assert_array_equal(xr.open_zarr(stores["zarrs"].path, consolidated=False).value.values, expected)
    if compressors is None:  # the same objects, byte for byte
        for key in ("value/c/0/0/0", "value/c/1/0/1"):
            assert (stores["zarrs"] / key).read_bytes() == (stores["default"] / key).read_bytes()
    assert region_status(stores["zarrs"], {"time": slice(0, 1), "longitude": slice(0, 64)}).complete


def test_codec_pipeline_is_chosen_by_configuration(tmp_path, monkeypatch):
    store = UPath(tmp_path) / "cube.zarr"
    create_store(store, template(), encoding=ENCODING)

    def pipeline_inside(name):
        with writing_with(name, store):
            return type(zarr.open_array((store / "value").path, mode="r")._async_array.codec_pipeline).__name__

    assert pipeline_inside("zarrs") == "ZarrsCodecPipeline" and pipeline_inside("default") == "BatchedCodecPipeline"
    monkeypatch.delenv("GNT_ZARR_CODEC_PIPELINE", raising=False)
    assert codec_pipeline_name() == "shards" and pipeline_inside(None) == "BatchedCodecPipeline"
    monkeypatch.setenv("GNT_ZARR_CODEC_PIPELINE", "default")
    assert codec_pipeline_name() == "default"
    monkeypatch.setenv("GNT_ZARR_CODEC_PIPELINE", "zarrs")
    assert codec_pipeline_name() == "zarrs" and pipeline_inside(None) == "ZarrsCodecPipeline"
    assert codec_pipeline_name("zarrs") == "zarrs"
    with pytest.raises(ValueError, match="not one of"):
        write_region(store, region(0, 0, 64, 1.0), codec_pipeline="fast")
    assert zarr.config.get("codec_pipeline.path") == CODEC_PIPELINES["default"]  # nothing left behind


@pytest.fixture
def whole_shard_writes(monkeypatch):
    """What each ``write_whole_shards`` call of ``write_region`` answered (True: encoded by zarr_shards)."""
    answers = []

    def spy(*args):
        answers.append(write_whole_shards(*args))
        return answers[-1]

    monkeypatch.setattr(zarr_regions, "write_whole_shards", spy)
    monkeypatch.delenv("GNT_ZARR_CODEC_PIPELINE", raising=False)
    return answers


@pytest.mark.parametrize("compressors", [None, "auto"], ids=["uncompressed", "zstd"])
def test_whole_shards_written_by_write_region_are_zarrs_own_bytes(tmp_path, compressors, whole_shard_writes):
    """The default writer ("shards", unset) encodes whole shards itself: the same objects as zarr-python's, read by its
    default pipeline. A change of zarr's shard layout (Morton order, index) fails here."""
    encoding = {"value": {**ENCODING["value"], "compressors": compressors}}
    stores = {name: UPath(tmp_path) / f"{name}.zarr" for name in ("unset", "shards", "default")}
    for name, store in stores.items():
        create_store(store, template(), encoding=encoding)
        pipeline = None if name == "unset" else name
        write_region(store, region(0, 0, 64, 1.0), codec_pipeline=pipeline)
        write_region(store, region(1, 64, 64, 2.0), codec_pipeline=pipeline)
        write_region(store, region(1, 64, 64, 3.0), codec_pipeline=pipeline)  # a rewrite replaces the shard whole
    assert whole_shard_writes == [True] * 6  # the unset default and "shards": zarr_shards wrote every shard
    for key in ("value/c/0/0/0", "value/c/1/0/1"):
        for name in ("unset", "shards"):
            assert (stores[name] / key).read_bytes() == (stores["default"] / key).read_bytes()
    expected = np.full((2, 64, 128), np.nan, "float32")
    expected[0, :, :64], expected[1, :, 64:] = 1.0, 3.0
    with zarr.config.set({"codec_pipeline.path": CODEC_PIPELINES["default"]}):
        np.testing.assert_array_equal(zarr.open_array((stores["unset"] / "value").path, mode="r")[...], expected)
        np.testing.assert_array_equal(xr.open_zarr(stores["unset"].path, consolidated=False).value.values, expected)
    assert region_status(stores["unset"], {"time": slice(1, 2), "longitude": slice(64, 128)}).complete
    assert not [p for p in (stores["unset"] / "value").rglob("*") if p.name.endswith(".partial")]


@pytest.mark.parametrize("where", ["s3", "gzip", "unsharded"])
def test_the_default_writer_leaves_what_it_does_not_spell_out_to_zarr(tmp_path, request, where, whole_shard_writes):
    """Object stores, codecs zarr_shards does not reproduce and unsharded arrays are written by zarr-python's
    pipeline under the default: the same objects as with "default", read back by plain zarr and xarray."""
    encoding = {"value": dict(ENCODING["value"])}
    if where == "gzip":
        encoding["value"]["compressors"] = zarr.codecs.GzipCodec(level=1)
    if where == "unsharded":
        del encoding["value"]["shards"]
    root = request.getfixturevalue("s3_root") if where == "s3" else UPath(tmp_path)
    stores = {name: root / f"{name}.zarr" for name in ("unset", "default")}
    for name, store in stores.items():
        create_store(store, template(), encoding=encoding)
        write_region(store, region(1, 64, 64, 2.0), codec_pipeline=None if name == "unset" else name)
    assert True not in whole_shard_writes  # zarr wrote them all (on s3 zarr_shards is not even asked)
    assert (whole_shard_writes == []) == (where == "s3")
    key = "value/c/1/0/1" if where != "unsharded" else "value/c/1/0/2"
    assert stores["unset"].fs.cat_file(f"{stores['unset'].path}/{key}") == stores["default"].fs.cat_file(f"{stores['default'].path}/{key}")
    expected = np.full((2, 64, 128), np.nan, "float32")
    expected[1, :, 64:] = 2.0
    np.testing.assert_array_equal(open_store(stores["unset"]).value.values, expected)
    assert region_status(stores["unset"], {"time": slice(1, 2), "longitude": slice(64, 128)}).complete


def _objects(path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("c/**/*")) if p.is_file()}


@pytest.mark.parametrize(("shape", "chunks", "shards", "dtype", "inner", "location"), [
    ((128, 96), (32, 32), (64, 96), "int16", [zarr.codecs.ZstdCodec(level=3, checksum=True)], "start"),
    ((128, 96), (32, 32), (64, 96), "int16", [zarr.codecs.ZstdCodec(level=3, checksum=True)], "end"),
    ((128, 96), (32, 32), (64, 96), "float32", [zarr.codecs.ZstdCodec(level=1)], "end"),
    ((128, 96), (32, 32), (64, 96), "float32", [], "start"),
    # the Sentinel cube's (time, y, x, band) uint16 with a Morton order over uneven counts of chunks per shard
    ((2, 64, 96, 3), (1, 16, 32, 3), (1, 32, 96, 3), "uint16", [zarr.codecs.ZstdCodec()], "end"),
    ((2, 60, 100), (1, 12, 20), (2, 36, 100), "uint8", [], "end"),  # 2 x 3 x 5 chunks per shard, edge shards
], ids=["zstd-checksum-index-start", "zstd-checksum-index-end", "zstd-level-1", "raw-index-start", "sentinel-4d", "uneven-edge"])
def test_whole_shards_are_the_objects_zarr_python_writes(tmp_path, shape, chunks, shards, dtype, inner, location):
    """Every layout the default writer takes, compared object by object with zarr-python's own write of the same
    array: guards the private Morton order and the shard layout zarr_shards reproduces."""
    values = np.random.default_rng(0).integers(0, 200, shape).astype(dtype)
    values[(0,) * len(shape)] = 7  # fill value (0) elsewhere in the first chunks stays stored: write_empty_chunks
    sharding = zarr.codecs.ShardingCodec(chunk_shape=chunks, index_location=location, codecs=[zarr.codecs.BytesCodec(), *inner])
    arrays = {writer: zarr.create_array(str(tmp_path / f"{writer}.zarr"), shape=shape, chunks=shards, dtype=dtype,
                                        serializer=sharding, compressors=None, fill_value=0,
                                        config={"write_empty_chunks": True}) for writer in ("zarr", "shards")}
    arrays["zarr"][...] = values
    assert shard_plan(arrays["shards"]) is not None
    assert write_whole_shards(arrays["shards"], values, tuple(slice(0, n) for n in shape))
    ours, theirs = _objects(tmp_path / "shards.zarr"), _objects(tmp_path / "zarr.zarr")
    assert ours.keys() == theirs.keys() and ours == theirs
    with zarr.config.set({"codec_pipeline.path": CODEC_PIPELINES["default"]}):
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "shards.zarr"), mode="r")[...], values)


def test_whole_shards_leave_partial_shards_and_other_codecs_to_zarr(tmp_path):
    values = np.random.default_rng(0).integers(-999, 999, (128, 96)).astype("int16")
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=(128, 96), chunks=(32, 32), shards=(64, 96), dtype="int16")
    assert not write_whole_shards(array, values[:32], (slice(0, 32), slice(0, 96)))  # not a whole shard
    # a region reaching the array's end inside its last shard: edge chunks padded with fill, those past it not stored
    edge = {}
    for writer in ("zarr", "shards"):
        edge[writer] = zarr.create_array(str(tmp_path / f"edge-{writer}.zarr"), shape=(70, 96), chunks=(32, 32),
                                         shards=(64, 96), dtype="int16", fill_value=-1, config={"write_empty_chunks": True})
    edge["zarr"][...] = values[:70]
    assert write_whole_shards(edge["shards"], values[:70], (slice(0, 70), slice(0, 96)))
    for key in ("c/0/0", "c/1/0"):
        assert (tmp_path / "edge-shards.zarr" / key).read_bytes() == (tmp_path / "edge-zarr.zarr" / key).read_bytes()
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "edge-shards.zarr"), mode="r")[...], values[:70])
    transposed = zarr.create_array(str(tmp_path / "t.zarr"), shape=(64, 96), chunks=(32, 32), shards=(64, 96), dtype="int16",
                                   filters=[zarr.codecs.TransposeCodec(order=(1, 0))], compressors=None)
    assert shard_plan(transposed) is None and not write_whole_shards(transposed, values[:64], (slice(0, 64), slice(0, 96)))
    crc = zarr.create_array(str(tmp_path / "crc.zarr"), shape=(64, 96), chunks=(32, 32), shards=(64, 96), dtype="int16",
                            compressors=[zarr.codecs.Crc32cCodec()])
    assert shard_plan(crc) is None


def test_layout_is_reused_until_the_metadata_changes(tmp_path):
    store = UPath(tmp_path) / "cube.zarr"
    create_store(store, template(), encoding=ENCODING)
    layout = StoreLayout.read(store)
    assert StoreLayout.read(store) is layout
    append_along(store, "time", template(times=(0, 1, 2)))
    grown = StoreLayout.read(store)
    assert grown is not layout and grown.sizes["time"] == 3 and grown.labels("time").tolist() == [0, 1, 2]
    write_region(store, region(0, 0, 64, 1.0).assign_coords(time=[2]), codec_pipeline="shards")
    assert open_store(store).value.isel(time=2, longitude=0).values[0] == 1.0


def test_a_failed_shard_encode_leaves_no_object_and_the_next_write_is_whole(tmp_path, monkeypatch):
    values = np.random.default_rng(0).integers(0, 200, (64, 96)).astype("int16")
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=(64, 96), chunks=(32, 32), shards=(64, 96), dtype="int16",
                              config={"write_empty_chunks": True})
    encode = zarr_shards._encoded_chunk

    def failing(values, window, *args):
        if window[1].start == 64:
            raise RuntimeError("encoder failed")
        return encode(values, window, *args)

    monkeypatch.setattr(zarr_shards, "_encoded_chunk", failing)
    with pytest.raises(RuntimeError, match="encoder failed"):
        write_whole_shards(array, values, (slice(0, 64), slice(0, 96)))
    assert not [p.name for p in (tmp_path / "a.zarr").rglob("*") if p.is_file() and p.name != "zarr.json"]
    monkeypatch.setattr(zarr_shards, "_encoded_chunk", encode)
    assert write_whole_shards(array, values, (slice(0, 64), slice(0, 96)))
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[...], values)
