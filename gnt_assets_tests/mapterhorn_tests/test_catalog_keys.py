"""File keys: sanitised stems, a URL hash only where stems collide, independent of line order."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gnt_assets.core.keys import check_key
from gnt_assets.mapterhorn.catalog import file_keys, list_files, parse_file_list


def _hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:8]


def test_keys_are_sanitised_and_hashed_only_where_stems_collide(tmp_path):
    (tmp_path / "src").mkdir()
    text = "# comment\nhttp://a/x/tile.tif\n\nhttp://b/y/tile.zip\nhttp://c/we|ird[1].tif\nhttp://a/x/tile.tif\n"
    (tmp_path / "src" / "file_list.txt").write_text(text)
    entries = list_files(tmp_path, "src")
    assert [(e.key, e.line) for e in entries] == [
        (f"src.tile-{_hash('http://a/x/tile.tif')}", 2), (f"src.tile-{_hash('http://b/y/tile.zip')}", 4), ("src.we_ird_1", 5)
    ]  # the repeated URL on line 6 is the file of line 2


def test_the_reported_clash_gives_three_keys():
    # unique_keys(["src.tile", "src.tile", "src.tile-2"]) used to return tile-2 twice.
    keys = file_keys("src", ["http://a/tile.tif", "http://b/tile.tif", "http://c/tile-2.tif"])
    assert len(set(keys.values())) == 3 and keys["http://c/tile-2.tif"] == "src.tile-2"


def test_a_stem_that_looks_like_a_hashed_key_does_not_clash():
    a, b = "http://a/tile.tif", "http://b/tile.tif"
    impostor = f"http://c/tile-{_hash(a)}.tif"
    keys = file_keys("src", [a, b, impostor])
    assert len(set(keys.values())) == 3


URL = st.builds(
    lambda host, parts, ext: f"https://{host}/{'/'.join(parts)}{ext}".strip(),
    st.sampled_from(["a.example", "b.example"]),
    st.lists(st.text(alphabet="abcT_-. |[]%09", min_size=0, max_size=6), min_size=1, max_size=3),
    st.sampled_from(["", ".tif", ".zip", ".7z.001", ".TIF"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(URL, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_any_url_list_gives_distinct_valid_keys_that_shuffling_never_changes(urls, rng):
    keys = file_keys("src", urls)
    assert set(keys) == set(urls)
    assert len(set(keys.values())) == len(keys)
    for key in keys.values():
        check_key(key)
        assert key.startswith("src.")
    shuffled = list(urls)
    rng.shuffle(shuffled)
    assert file_keys("src", shuffled) == keys
    parsed = parse_file_list("src", "\n".join(shuffled))
    assert {e.url: e.key for e in parsed} == keys


def test_a_large_list_with_many_shared_stems_is_unique():
    urls = [f"https://h/{d}/tile_{i % 500}.tif" for d in range(20) for i in range(500)]
    random.Random(1).shuffle(urls)
    assert len(set(file_keys("src", urls).values())) == 10_000
