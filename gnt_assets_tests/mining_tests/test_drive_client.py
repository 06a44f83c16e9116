"""The real Drive v3 client (static discovery) against scripted HTTP responses (paging, a 503 mid-download, delete)
and against the loopback Drive server (OAuth refresh, shared drives, md5Checksum)."""

import hashlib
import json

import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
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


def _exports(root, names=("A_0.tif", "A_1.tif", "A_2.tif")):
    (root / "landsat_mining").mkdir(parents=True)
    for i, name in enumerate(names):
        (root / "landsat_mining" / name).write_bytes(DATA * (i + 1))
    return root


def _login(server, **settings):
    from gnt_assets.mining.resources import GoogleDrive

    return GoogleDrive(client_id=server.client_id, client_secret=server.client_secret, refresh_token=server.refresh_token,
                       token_uri=server.token_uri, api_endpoint=server.api_endpoint, **settings)


def test_refresh_token_login_sends_the_token_it_was_given_and_refreshes_once_on_401(tmp_path):
    """The seed's OAuth login: no access token at start, one from the token endpoint, a new one when it expires."""
    from gnt_assets.mining.local.drive_server import drive_server

    with drive_server(_exports(tmp_path / "drive")) as server:
        drive = _login(server)
        files = drive.list_files("A_")
        assert [f.name for f in files] == ["A_0.tif", "A_1.tif", "A_2.tif"]
        assert server.requests[0][:2] == ("POST", "/token") and server.tokens_issued == ["ya29.local-1"]
        assert {auth for method, _, auth in server.requests[1:]} == {"Bearer ya29.local-1"}
        server.expire_tokens()  # an hour later
        server.requests.clear()
        drive.download(files[1], tmp_path / "out" / "A_1.tif")
        assert (tmp_path / "out" / "A_1.tif").read_bytes() == DATA * 2
        calls = [(method, auth) for method, _, auth in server.requests]
        assert calls == [("GET", "Bearer ya29.local-1"), ("POST", ""), ("GET", "Bearer ya29.local-2")]  # 401, one refresh, retry
        assert server.tokens_issued == ["ya29.local-1", "ya29.local-2"]
        wrong = _login(server).model_copy(update={"refresh_token": "1//revoked"})
        with pytest.raises(Exception, match="invalid_grant"):
            wrong.list_files("A_")


def test_shared_drive_files_are_listed_downloaded_and_deleted(tmp_path):
    from gnt_assets.mining.local.drive_server import drive_server

    with drive_server(_exports(tmp_path / "drive"), shared_drive_id="0AsharedGNT") as server:
        drive = _login(server, shared_drive_id="0AsharedGNT")
        files = drive.list_files("A_")
        assert [f.size for f in files] == [len(DATA), 2 * len(DATA), 3 * len(DATA)]
        drive.download(files[2], tmp_path / "out" / "A_2.tif")
        assert (tmp_path / "out" / "A_2.tif").read_bytes() == DATA * 3
        drive.delete(files[0].file_id)
        assert [f.name for f in drive.list_files("A_")] == ["A_1.tif", "A_2.tif"]
        assert all("supportsAllDrives=true" in path for _, path, _ in server.requests if path.startswith("/drive/"))
        everywhere = _login(server)  # no drive id: every drive the user is a member of
        assert [f.name for f in everywhere.list_files("A_")] == ["A_1.tif", "A_2.tif"]
        # The stand-in hides shared-drive files from calls without the parameters, as Drive does.
        service = drive._client()
        assert service.files().list(q="name contains 'A_'").execute()["files"] == []
        with pytest.raises(HttpError) as refused:
            service.files().get_media(fileId=files[1].file_id).execute()
        assert refused.value.resp.status == 404
        with pytest.raises(HttpError, match="supportsAllDrives"):
            service.files().list(q="name contains 'A_'", includeItemsFromAllDrives=True).execute()


def test_download_whose_md5_differs_from_drive_is_discarded_and_kept_on_drive(tmp_path):
    from gnt_assets.mining.drive import ChecksumMismatch
    from gnt_assets.mining.local.drive_server import drive_server

    with drive_server(_exports(tmp_path / "drive"), corrupt={"A_1.tif"}) as server:
        drive = _login(server)
        files = drive.list_files("A_")
        assert files[1].md5 == hashlib.md5(DATA * 2).hexdigest()  # md5Checksum is asked for and served
        dest = tmp_path / "out" / "A_1.tif"
        with pytest.raises(ChecksumMismatch, match=rf"A_1.tif \({files[1].file_id}\): downloaded MD5 [0-9a-f]{{32}}, Drive lists {files[1].md5}"):
            drive.download(files[1], dest)
        assert not dest.exists() and not dest.with_name("A_1.tif.part").exists()
        assert (tmp_path / "drive" / "landsat_mining" / "A_1.tif").exists()
        server.corrupt.clear()
        drive.download(files[1], dest)
        assert dest.read_bytes() == DATA * 2


def test_cloud_profile_takes_the_refresh_token_login_and_shared_drive_from_the_environment(monkeypatch):
    from gnt_assets.mining.definitions import mining_service_resources

    for name, value in (("GNT_GOOGLE_CLIENT_ID", "cid"), ("GNT_GOOGLE_CLIENT_SECRET", "csecret"), ("GNT_GOOGLE_REFRESH_TOKEN", "1//r"),
                        ("GNT_GEE_PROJECT", "p"), ("GNT_DRIVE_SHARED_DRIVE_ID", "0Ashared")):
        monkeypatch.setenv(name, value)
    resources = mining_service_resources("cloud")
    drive = resources["drive"].process_config_and_initialize()  # EnvVars resolve at run time
    assert (drive.client_id, drive.client_secret, drive.refresh_token, drive.shared_drive_id) == ("cid", "csecret", "1//r", "0Ashared")
    credentials = resources["earthengine"].process_config_and_initialize().credentials()
    assert credentials.refresh_token == "1//r" and credentials.token is None
    monkeypatch.delenv("GNT_GOOGLE_REFRESH_TOKEN")
    monkeypatch.setenv("GNT_GEE_SERVICE_ACCOUNT_KEY", "{}")
    assert mining_service_resources("cloud")["drive"].process_config_and_initialize().service_account_key == "{}"
