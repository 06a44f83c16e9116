import importlib
import inspect
import pkgutil

import pytest
import requests

import gnt_assets
from gnt_assets.core.errors import GntError, InputError, TransientError, is_transient


def _project_exceptions():
    for info in pkgutil.walk_packages(gnt_assets.__path__, "gnt_assets."):
        if ".local" in info.name or info.name.endswith((".definitions", ".demo")) or info.name == "gnt_assets.definitions":
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Exception) and cls.__module__ == info.name and info.name != "gnt_assets.core.errors":
                yield cls


def test_every_project_exception_belongs_to_one_family():
    classes = list(_project_exceptions())
    assert len(classes) >= 28
    for cls in classes:
        assert issubclass(cls, GntError), cls
        assert issubclass(cls, InputError) != issubclass(cls, TransientError), cls


def test_names_users_catch_keep_their_standard_bases():
    from gnt_assets.core.zarr_regions import ZarrLayoutError
    from gnt_assets.mapterhorn.download import DownloadError
    from gnt_assets.mining.polygons import PolygonFileError

    assert issubclass(ZarrLayoutError, ValueError) and issubclass(PolygonFileError, ValueError)
    assert issubclass(DownloadError, RuntimeError)


def _response(status):
    response = requests.Response()
    response.status_code = status
    return response


@pytest.mark.parametrize(("error", "transient"), [
    (InputError("x.tif: no CRS; set crs in metadata.json"), False),
    (TransientError("Drive answered 503"), True),
    (TimeoutError("read timed out"), True),
    (requests.HTTPError(response=_response(429)), True),
    (requests.HTTPError(response=_response(404)), False),
    (KeyError("band"), False),
])
def test_is_transient(error, transient):
    assert is_transient(error) is transient


def test_cause_chain_decides_and_our_input_error_wins():
    with pytest.raises(RuntimeError) as wrapped:
        try:
            raise TimeoutError("socket")
        except TimeoutError as cause:
            raise RuntimeError("read failed") from cause
    assert is_transient(wrapped.value)
    with pytest.raises(InputError) as refused:
        try:
            raise TimeoutError("socket")
        except TimeoutError as cause:
            raise InputError("bad.tif is truncated") from cause
    assert not is_transient(refused.value)
