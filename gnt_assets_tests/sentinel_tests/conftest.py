"""Session fixtures: generated scenes behind one rustac STAC API on loopback."""

import pytest

from gnt_assets.sentinel.local import ensure_sample_scenes, sample_item_files, stac_api_server


@pytest.fixture(scope="session")
def scenes_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentinel_source")
    ensure_sample_scenes(root)
    return root


@pytest.fixture(scope="session")
def stac_url(scenes_dir):
    with stac_api_server(*sample_item_files(scenes_dir)) as url:
        yield url
