"""Fixtures every test package shares: a private storage root and a Dagster instance."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from upath import UPath

os.environ.setdefault("GNT_PROFILE", "local")


@pytest.fixture
def storage_root(tmp_path, monkeypatch) -> UPath:
    """A fresh storage root; GNT_STORAGE_ROOT points at it so resources built now use it."""
    root = tmp_path / "storage"
    root.mkdir()
    monkeypatch.setenv("GNT_STORAGE_ROOT", str(root))
    return UPath(root)


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance
