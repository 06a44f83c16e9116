"""Quick looks: small, stretched, nodata transparent, with a legend and honest, named numbers."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gnt_assets.core.quicklook import MAX_SIDE, RAMP, choropleth, framed_png, quicklook
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
    assert (image[: 100 // step] == 0).all()  # nodata is (0, 0, 0, 0): no colour behind the transparency
    drawn = image[100 // step :, :, :3].reshape(-1, 3)
    assert (drawn[0] == RAMP[0]).all() and (drawn[-1] == RAMP[255]).all()  # the stretch spans the whole ramp
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
    assert metadata["preview"].value.startswith("![preview: red, green, blue](data:image/png;base64,")
    assert metadata["valid_share"].value == pytest.approx(1 - 64 / 4096)
    assert "each stretched 2nd-98th percentile" in metadata["preview"].value
    assert set(metadata) >= {"min (red, green, blue)", "mean (red, green, blue)", "max (red, green, blue)"}


def test_single_band_preview_says_which_values_the_ramp_ends_mean_and_names_its_numbers():
    band = np.arange(100, dtype="float32").reshape(10, 10)
    look = quicklook(band, variable="T2 daily mean", units="K")
    low, high = np.percentile(band, [2, 98])
    assert look.stretch == pytest.approx((low, high))
    metadata = quicklook_metadata(look)
    assert f"T2 daily mean, K, dark purple {low:.4g} to yellow {high:.4g}" in metadata["preview"].value
    assert "T2 daily mean, K: min 0, mean 49.5, max 99 over 100.0% valid pixels" in metadata["preview"].value
    assert metadata["min (T2 daily mean, K)"].value == 0 and metadata["max (T2 daily mean, K)"].value == 99
    assert "min" not in metadata  # every number says what it is of
    assert quicklook(np.full((8, 8), np.nan)).stretch is None  # nothing valid: no ramp to explain
    assert "no valid values to draw" in quicklook_metadata(quicklook(np.full((8, 8), np.nan)))["preview"].value


def embedded_png(markdown: str) -> np.ndarray:
    match = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", markdown)
    assert match, markdown
    return decode(base64.b64decode(match.group(1)))


def test_the_embedded_picture_carries_a_colour_bar_under_the_preview():
    band = np.tile(np.linspace(0, 1, 64, dtype="float32"), (64, 1))
    look = quicklook(band)
    framed = embedded_png(quicklook_metadata(look)["preview"].value)
    picture = decode(look.png)
    assert np.array_equal(framed[: picture.shape[0], : picture.shape[1]], picture)  # the picture, untouched, on top
    legend = framed[picture.shape[0] :]
    assert (legend[..., 3] == 255).all()  # the legend is opaque (readable on dark and light pages)
    ramp_rows = [row for row in legend[..., :3] if (row[:, None, :] == RAMP[None, [0, 255]]).all(-1).any(0).all()]
    assert ramp_rows, "no row of the legend holds both ends of the colour ramp"


def test_a_constant_field_is_one_colour_and_the_legend_gives_its_value():
    look = quicklook(np.full((16, 16), 5.0, dtype="float32"), variable="band 1")
    image = decode(look.png)
    assert (image[..., :3] == RAMP[128]).all()
    assert "every valid value is 5" in quicklook_metadata(look)["preview"].value
    assert decode(framed_png(look)).shape[0] > image.shape[0]


def test_grids_under_8_by_8_pixels_are_described_not_drawn():
    means = np.array([[3.25, 4.0]])
    metadata = quicklook_metadata(quicklook(means, variable="band 1 mean per tile"), title="tile_means")
    note = metadata["tile_means"].value
    assert "data:image" not in note and note.startswith("1 x 2 grid, too small for a picture")
    assert "band 1 mean per tile: min 3.25, mean 3.625, max 4" in note
    assert "data:image" in quicklook_metadata(quicklook(np.ones((8, 8))))["preview"].value


def test_explicit_validity_makes_filled_pixels_transparent_and_the_outline_is_red_and_named():
    rgb = np.random.default_rng(1).uniform(0.05, 0.3, (3, 64, 64)).astype("float32")
    rgb[:, :, 48:] = 0  # NaN filled with 0, as in the training tiles: only the mask knows
    valid = np.ones((64, 64), bool)
    valid[:, 48:] = False
    mines = np.zeros((64, 64), bool)
    mines[16:32, 8:24] = True
    look = quicklook(rgb, valid=valid, outline=mines, outline_label="mine polygons", variable="Landsat red, green, blue")
    image = decode(look.png)  # enlarged x4
    assert (image[:, 192:] == 0).all() and (image[:, :192, 3] == 255).all()
    red = (image[..., :3] == (255, 32, 32)).all(-1)
    assert red[64, 32:96].all() and red[64:128, 32].all()  # the box's top edge and left edge
    assert not red[80:120, 40:88].any()  # inside it: the picture
    assert look.valid_share == pytest.approx(0.75)
    text = quicklook_metadata(look)["preview"].value
    assert "red outline: mine polygons" in text and "transparent: no data" in text


def test_choropleth_fills_cells_on_the_ramp_and_leaves_missing_values_transparent():
    cells = [shapely.box(i, 0, i + 1, 1) for i in range(4)]
    look = choropleth(cells, [0.0, np.nan, 1.0, 2.0], variable="band 1 mean per cell", units="m")
    image = decode(look.png)
    centres = [image[image.shape[0] // 2, int((i + 0.5) * image.shape[1] / 4)] for i in range(4)]
    assert centres[1][3] == 0 and all(c[3] == 255 for c in (centres[0], centres[2], centres[3]))
    assert (centres[3][:3] == RAMP[255]).all() and (centres[0][:3] == RAMP[0]).all()
    metadata = quicklook_metadata(look, title="choropleth")
    assert metadata["shape"].value == "4 cells" and metadata["valid_share"].value == 0.75
    assert metadata["max (band 1 mean per cell, m)"].value == 2.0 and "transparent: cells without a value" in metadata["choropleth"].value


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="quicklook takes"):
        quicklook(np.zeros((4, 8, 8)))


def test_stretch_is_between_the_2nd_and_98th_percentile():
    """One hot pixel must not turn the rest of the picture black."""
    array = np.tile(np.linspace(0.0, 1.0, 200, dtype="float32"), (100, 1))
    array[0, 0] = 1e6
    image = decode(quicklook(array).png)[..., :3]
    low, high = np.percentile(array, [2, 98])
    expected = RAMP[(np.clip((array - low) / (high - low), 0, 1) * 255).astype(np.uint8)]
    assert np.array_equal(image, expected)
    assert (image[:, 100] == RAMP[127]).all() | (image[:, 100] == RAMP[128]).all()  # mid-ramp stays mid-ramp despite the outlier


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
