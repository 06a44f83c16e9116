"""The real Drive v3 client (static discovery) against scripted HTTP responses: paging, a 503 mid-download, delete."""

import json

import pytest
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence

from gnt_assets.mining.drive import DriveFile, delete_file, download_file, folder_ids, list_export_files

DATA = bytes(range(256)) * 10  # 2,560 bytes


def _service(responses):
    return build("drive", "v3", http=HttpMockSequence(responses), static_discovery=True, cache_discovery=False)


def test_lists_every_page_of_shards():
    prefix = "LANDSAT_C02_T1_L2_ZAF_0a1b2c3d_2020"
    pages = [
        ({"status": "200"}, json.dumps({"files": [{"id": "folder1"}]})),  # the export folder, found by name
        ({"status": "200"}, json.dumps({"files": [{"id": "a", "name": f"{prefix}-0000000000-0000000000.tif", "size": "10"}], "nextPageToken": "t2"})),
        ({"status": "200"}, json.dumps({"files": [{"id": "b", "name": f"{prefix}-0000000000-0000000512.tif", "size": "12"},
                                                  {"id": "c", "name": f"OTHER_{prefix}.tif", "size": "1"}]})),
    ]
    http = HttpMockSequence(pages)
    service = build("drive", "v3", http=http, static_discovery=True, cache_discovery=False)
    files = list_export_files(service, prefix, folder_ids(service, "landsat_mining"))
    assert [f.file_id for f in files] == ["a", "b"]  # both shards, across pages; a name merely containing it is skipped
    assert "%27folder1%27+in+parents" in http.request_sequence[1][0] and "pageToken=t2" in http.request_sequence[2][0]
    missing = _service([({"status": "200"}, json.dumps({"files": []}))])
    assert not list_export_files(missing, prefix, folder_ids(missing, "missing_folder"))


def test_resource_looks_the_export_folder_up_once():
    """Every cluster's listing would otherwise cost a second Drive call for the same folder."""
    from gnt_assets.mining.resources import GoogleDrive

    listing = ({"status": "200"}, json.dumps({"files": []}))
    http = HttpMockSequence([({"status": "200"}, json.dumps({"files": [{"id": "folder1"}]})), listing, listing])
    drive = GoogleDrive(access_token="token")
    drive._service = build("drive", "v3", http=http, static_discovery=True, cache_discovery=False)
    assert drive.list_files("A_") == [] and drive.list_files("B_") == []
    assert len(http.request_sequence) == 3 and all("folder1" in uri for uri, *_ in http.request_sequence[1:])


def test_download_resumes_after_503_and_delete(tmp_path):
    chunk = 1000
    responses = [
        ({"status": "206", "content-range": f"bytes 0-999/{len(DATA)}"}, DATA[:1000]),
        ({"status": "503"}, "backend error"),
        ({"status": "206", "content-range": f"bytes 1000-1999/{len(DATA)}"}, DATA[1000:2000]),
        ({"status": "206", "content-range": f"bytes 2000-2559/{len(DATA)}"}, DATA[2000:]),
        ({"status": "204"}, ""),
    ]
    service = _service(responses)
    dest = tmp_path / "export.tif"
    download_file(service, DriveFile("f1", "export.tif", len(DATA)), dest, chunk_size=chunk)
    assert dest.read_bytes() == DATA and not (tmp_path / "export.tif.part").exists()
    delete_file(service, "f1")


def test_truncated_download_is_an_error_naming_the_file(tmp_path):
    responses = [({"status": "200", "content-length": "500"}, DATA[:500])]
    with pytest.raises(IOError, match=r"export.tif: downloaded 500 bytes, Drive lists 2560"):
        download_file(_service(responses), DriveFile("f1", "export.tif", len(DATA)), tmp_path / "export.tif")
    assert not (tmp_path / "export.tif").exists()
