"""Quick looks: small, stretched, nodata transparent, with honest numbers."""

from __future__ import annotations

import io

import numpy as np
import pytest
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
    assert image.shape == (64, 64, 4) and (image[:8, :8, 3] == 0).all()
    metadata = quicklook_metadata(look)
    assert metadata["preview"].value.startswith("![preview](data:image/png;base64,")
    assert metadata["valid_share"].value == pytest.approx(1 - 64 / 4096)


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="quicklook takes"):
        quicklook(np.zeros((4, 8, 8)))
