"""Quick looks: small, stretched, nodata transparent, with honest numbers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gnt_assets.core.quicklook import MAX_SIDE, quicklook
from gnt_assets.materialization import quicklook_metadata


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_single_band_is_small_stretched_and_nodata_transparent():
    array = np.arange(1000 * 600, dtype="float32").reshape(600, 1000)
    array[:100, :] = -9999
    look = quicklook(array, nodata=-9999, crs="EPSG:3035")
    image = decode(look.png)
    assert max(image.shape[:2]) <= MAX_SIDE and image.shape[2] == 4
    step = 4  # 1000 px decimated to 250
    assert (image[: 100 // step, :, 3] == 0).all() and (image[100 // step :, :, 3] == 255).all()
    assert image[100 // step :, :, 0].min() == 0 and image[100 // step :, :, 0].max() == 255
    assert look.valid_share == pytest.approx(500 / 600)
    assert look.minimum == 100_000 and look.maximum == 599_999


def test_rgb_with_nan_and_metadata_for_the_ui():
    rgb = np.random.default_rng(0).uniform(0, 0.3, (3, 64, 64)).astype("float32")
    rgb[:, :8, :8] = np.nan
    look = quicklook(rgb)
    image = decode(look.png)
    assert image.shape == (256, 256, 4)  # enlarged x4 so the UI shows more than a smudge
    assert (image[:32, :32, 3] == 0).all() and (image[32:, :, 3] == 255).all() and (image[:, 32:, 3] == 255).all()
    metadata = quicklook_metadata(look)
    assert metadata["preview"].value.startswith("![preview](data:image/png;base64,")
    assert metadata["valid_share"].value == pytest.approx(1 - 64 / 4096)
    assert "each band stretched" in metadata["preview"].value


def test_single_band_preview_says_which_values_are_black_and_white():
    band = np.arange(100, dtype="float32").reshape(10, 10)
    look = quicklook(band)
    low, high = np.percentile(band, [2, 98])
    assert look.stretch == pytest.approx((low, high))
    assert f"black {low:.6g} to white {high:.6g}" in quicklook_metadata(look)["preview"].value
    assert quicklook(np.full((4, 4), np.nan)).stretch is None  # nothing valid: no legend to give


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="quicklook takes"):
        quicklook(np.zeros((4, 8, 8)))


def test_stretch_is_between_the_2nd_and_98th_percentile():
    """One hot pixel must not turn the rest of the picture black."""
    array = np.tile(np.linspace(0.0, 1.0, 200, dtype="float32"), (100, 1))
    array[0, 0] = 1e6
    image = decode(quicklook(array).png)[..., 0]
    low, high = np.percentile(array, [2, 98])
    expected = (np.clip((array - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(image, expected)
    assert (image[:, 100] > 100).all()  # mid-grey stays mid-grey despite the outlier


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 700), width=st.integers(1, 700), hole=st.floats(0, 1))
def test_any_grid_gives_a_readable_preview_with_nodata_where_it_was(height, width, hole):
    """Long side between MAX_SIDE/2 and MAX_SIDE; every preview pixel keeps the validity of its source pixel."""
    array = np.ones((height, width), dtype="float32")
    cut = int(hole * height)
    array[:cut] = np.nan
    image = decode(quicklook(array).png)
    assert MAX_SIDE // 2 < max(image.shape[:2]) <= MAX_SIDE
    rows = np.arange(image.shape[0]) * height // image.shape[0]  # source row of each preview row (decimated or repeated)
    if max(height, width) > MAX_SIDE:
        rows = np.arange(image.shape[0]) * int(np.ceil(max(height, width) / MAX_SIDE))
    assert np.array_equal(image[:, 0, 3] == 0, rows < cut)
