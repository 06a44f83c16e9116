"""Region writes as stored (straight into the zarr arrays) store the same bytes as xarray's CF-encoding path,
and are taken only where CF encoding would change nothing."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from upath import UPath

from gnt_assets.core.zarr_regions import StoreLayout, create_store, open_store, stored_as_is, write_region


def _template(dtype, attrs=None):
    data = xr.DataArray(np.zeros((4, 8, 8), dtype), dims=("t", "y", "x"), coords={"t": np.arange(4)}, attrs=attrs or {})
    return data.to_dataset(name="v").chunk({"t": 1})


def _bytes(store: UPath) -> dict[str, bytes]:
    """The data array's chunk objects by key."""
    return {p.relative_to(store.path).as_posix(): p.read_bytes() for p in sorted(Path(store.path).rglob("v/c/*/*/*"))}


@pytest.mark.parametrize(("dtype", "encoding", "as_is"), [
    ("float32", {}, True),  # NaN fill: encoding changes nothing
    ("int16", {}, True),
    ("float32", {"_FillValue": -9999.0}, False),  # NaN would be written as -9999
    ("float32", {"scale_factor": 0.5, "dtype": "int16"}, False),
])
def test_a_region_written_as_stored_is_the_bytes_xarray_writes(tmp_path, dtype, encoding, as_is):
    values = np.arange(2 * 8 * 8, dtype=dtype).reshape(2, 8, 8)
    if values.dtype.kind == "f":
        values[0, :2] = np.nan
    region = xr.Dataset({"v": (("t", "y", "x"), values)}, coords={"t": [1, 2]})
    stores = []
    for name, encoded in (("xarray", False), ("auto", None)):
        store = UPath(tmp_path / f"{name}.zarr")
        create_store(store, _template(dtype), encoding={"v": {"chunks": (1, 8, 8), **encoding}})
        write_region(store, region, encoded=encoded)
        stores.append(store)
    layout = StoreLayout.read(stores[1])
    assert stored_as_is(region, layout, {"t"}) is as_is
    assert _bytes(stores[0]) == _bytes(stores[1]) and len(_bytes(stores[0])) == 2
    np.testing.assert_array_equal(open_store(stores[1])["v"].isel(t=slice(1, 3)).values,
                                  open_store(stores[0])["v"].isel(t=slice(1, 3)).values)


def test_a_region_with_its_own_coordinate_goes_through_xarray(tmp_path):
    store = UPath(tmp_path / "c.zarr")
    template = _template("float32").assign_coords(label=("t", np.zeros(4, "float32")))
    create_store(store, template, encoding={"v": {"chunks": (1, 8, 8)}})
    region = xr.Dataset({"v": (("t", "y", "x"), np.ones((1, 8, 8), "float32"))}, coords={"t": [3], "label": ("t", np.array([7.0], "float32"))})
    assert not stored_as_is(region, StoreLayout.read(store), {"t"})
    write_region(store, region)
    assert float(open_store(store)["label"].values[3]) == 7.0


def test_lazy_data_goes_through_xarray_chunk_by_chunk(tmp_path):
    store = UPath(tmp_path / "lazy.zarr")
    create_store(store, _template("float32"), encoding={"v": {"chunks": (1, 8, 8)}})
    region = xr.Dataset({"v": (("t", "y", "x"), np.ones((1, 8, 8), "float32"))}, coords={"t": [0]})
    assert stored_as_is(region, StoreLayout.read(store), {"t"})
    assert not stored_as_is(region.chunk(), StoreLayout.read(store), {"t"})
