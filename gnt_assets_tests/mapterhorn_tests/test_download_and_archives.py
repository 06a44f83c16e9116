"""Downloads against the loopback source server (Range, faults) and archive member checks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import py7zr
import pytest

from gnt_assets.mapterhorn import steps
from gnt_assets.mapterhorn.archives import ArchiveError, extract
from gnt_assets.mapterhorn.catalog import CatalogError, SourceFile, check_url, sources, unusable_sources
from gnt_assets.mapterhorn.chain import FileWork
from gnt_assets.mapterhorn.download import DownloadError, DownloadRefused, download
from gnt_assets.mapterhorn.local import SourceServer

LIMITS = dict(max_total_bytes=10_000_000, max_ratio=50)


def server_www(server) -> Path:
    return server.www


@pytest.fixture
def server(tmp_path):
    www = tmp_path / "www"
    (www / "src").mkdir(parents=True)
    (www / "src" / "big.bin").write_bytes(bytes(range(256)) * 4000)
    with SourceServer(www) as running:
        yield running


def test_reset_mid_file_resumes_with_range(server, tmp_path):
    server.faults.add("/src/big.bin", "reset")
    dest = tmp_path / "out" / "big.bin"
    with pytest.raises(DownloadError, match="kept for resume"):
        download(f"{server.base_url}/src/big.bin", dest, retries=0)
    part = dest.with_name("big.bin.part")
    kept = part.stat().st_size
    assert not dest.exists() and 0 < kept < 1_024_000  # a half file is never the file
    result = download(f"{server.base_url}/src/big.bin", dest, retries=0)
    assert dest.read_bytes() == bytes(range(256)) * 4000 and not part.exists()
    assert result.resumed_from == kept
    assert server.faults.requests[-1] == ("/src/big.bin", f"bytes={kept}-")


KILLED_DOWNLOAD = "import sys; from pathlib import Path; from gnt_assets.mapterhorn.download import download; download(sys.argv[1], Path(sys.argv[2]), retries=0)"


def test_download_killed_mid_file_resumes_with_range(server, tmp_path):
    """SIGKILL the downloading process while bytes trickle in; the rerun asks only for the rest."""
    server.faults.add("/src/big.bin", "slow")
    dest = tmp_path / "out" / "big.bin"
    part = dest.with_name("big.bin.part")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    downloader = subprocess.Popen([sys.executable, "-c", KILLED_DOWNLOAD, f"{server.base_url}/src/big.bin", str(dest)], env=env)
    while not (part.exists() and part.stat().st_size >= 64 * 1024) and downloader.poll() is None:
        time.sleep(0.01)
    downloader.send_signal(signal.SIGKILL)
    assert downloader.wait() == -signal.SIGKILL, "the download finished before it could be killed"
    kept = part.stat().st_size
    assert not dest.exists() and 0 < kept < 1_024_000
    result = download(f"{server.base_url}/src/big.bin", dest, retries=0)
    assert result.resumed_from == kept and dest.read_bytes() == bytes(range(256)) * 4000 and not part.exists()
    assert server.faults.requests[-1] == ("/src/big.bin", f"bytes={kept}-")


def test_a_key_that_now_names_another_url_is_refused(server, tmp_path):
    work = FileWork(tmp_path, "src.big")
    fetch = lambda url, dest: download(url, dest, retries=0)  # noqa: E731
    steps.download_step(work, SourceFile("src", "src.big", f"{server.base_url}/src/big.bin", 2), fetch)
    with pytest.raises(CatalogError, match=r"src.big: was downloaded from .*/src/big.bin but the file list now says .*/other/big.bin"):
        steps.download_step(work, SourceFile("src", "src.big", f"{server.base_url}/other/big.bin", 2), fetch)


def test_servers_of_parallel_steps_share_the_saved_port(server, tmp_path):
    port = server.httpd.server_address[1]
    with SourceServer(tmp_path / "www", port) as second:  # what a second step process of a backfill starts
        assert second.httpd.server_address[1] == port
    # The second one stopping leaves the first serving.
    assert download(f"{server.base_url}/src/big.bin", tmp_path / "big.bin", retries=0).size == 1_024_000


def test_a_resumed_download_is_checked_against_the_first_responses_md5(server, tmp_path):
    server.faults.add("/src/big.bin", "reset")
    dest = tmp_path / "big.bin"
    with pytest.raises(DownloadError):
        download(f"{server.base_url}/src/big.bin", dest, retries=0)
    part = dest.with_name("big.bin.part")
    part.write_bytes(b"\xff" + part.read_bytes()[1:])  # the kept half went bad on disk
    with pytest.raises(DownloadError, match="differs from the published"):
        download(f"{server.base_url}/src/big.bin", dest, retries=0)  # the 206 carries no MD5; the kept one catches it
    assert server.faults.requests[-1][1].startswith("bytes=")
    assert not part.exists() and not dest.exists() and not dest.with_name("big.bin.part.json").exists()


def test_503_and_wrong_length_are_retried(server, tmp_path):
    server.faults.add("/src/big.bin", "503", "wrong_length")
    result = download(f"{server.base_url}/src/big.bin", tmp_path / "big.bin", retries=3, backoff_s=0.01)
    assert result.attempts == 3 and result.size == 1_024_000


def test_404_fails_at_once_naming_the_url(server, tmp_path):
    with pytest.raises(DownloadRefused, match=r"/src/missing.tif: HTTP 404"):
        download(f"{server.base_url}/src/missing.tif", tmp_path / "m.tif", retries=3)
    assert len(server.faults.requests) == 1


CONTENT = bytes(range(256)) * 4000


def _cut_off(server, dest) -> int:
    """A first attempt reset halfway: returns the bytes the .part holds."""
    server.faults.add("/src/big.bin", "reset")
    with pytest.raises(DownloadError, match="kept for resume"):
        download(f"{server.base_url}/src/big.bin", dest, retries=0)
    return dest.with_name(dest.name + ".part").stat().st_size


def test_gzip_encoded_body_reset_mid_body_is_never_accepted(server, tmp_path):
    """The server encodes although identity was asked for, and the connection drops halfway."""
    url, dest = f"{server.base_url}/src/big.bin", tmp_path / "big.bin"
    server.faults.add("/src/big.bin", "gzip_reset")
    with pytest.raises(DownloadError, match=r"connection lost|got \d+ of \d+ bytes"):
        download(url, dest, retries=0)
    assert not dest.exists()
    assert server.faults.headers[-1]["Accept-Encoding"] == "identity"
    server.faults.add("/src/big.bin", "gzip_reset", "gzip")
    result = download(url, dest, retries=1, backoff_s=0)
    assert dest.read_bytes() == CONTENT and result.attempts == 2 and result.md5 == hashlib.md5(CONTENT).hexdigest()
    assert server.faults.requests[-1] == ("/src/big.bin", None)  # an encoded body is never resumed
    assert not list(tmp_path.glob("*.part*")) and not list(tmp_path.glob(".verify-*"))


def test_a_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "big.bin"
    kept = _cut_off(server, dest)
    server.faults.add("/src/big.bin", "ignore_range")
    result = download(f"{server.base_url}/src/big.bin", dest, retries=0)
    assert server.faults.requests[-1] == ("/src/big.bin", f"bytes={kept}-")  # asked for the rest, got a 200
    assert dest.read_bytes() == CONTENT and result.size == len(CONTENT)


def test_a_wrong_content_range_start_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "big.bin"
    kept = _cut_off(server, dest)
    server.faults.add("/src/big.bin", "wrong_start")
    result = download(f"{server.base_url}/src/big.bin", dest, retries=1, backoff_s=0)
    assert [r for _, r in server.faults.requests[-2:]] == [f"bytes={kept}-", None]
    assert dest.read_bytes() == CONTENT and result.attempts == 2


def test_a_file_replaced_between_attempts_is_not_stitched(server, tmp_path):
    dest = tmp_path / "big.bin"
    kept = _cut_off(server, dest)
    first_etag = f'"{hashlib.md5(CONTENT).hexdigest()}"'
    replaced = bytes(reversed(CONTENT))  # same size, other bytes
    (server_www(server) / "src" / "big.bin").write_bytes(replaced)
    download(f"{server.base_url}/src/big.bin", dest, retries=0)
    assert server.faults.requests[-1] == ("/src/big.bin", f"bytes={kept}-")
    assert server.faults.headers[-1]["If-Range"] == first_etag
    assert dest.read_bytes() == replaced  # the server's If-Range answer was the whole new file


def test_a_changed_etag_on_a_206_restarts_even_if_the_server_ignores_if_range(server, tmp_path):
    dest = tmp_path / "big.bin"
    _cut_off(server, dest)
    state_path = dest.with_name("big.bin.part.json")
    state_path.write_text(json.dumps({**json.loads(state_path.read_text()), "etag": '"00000000000000000000000000000000"'}))
    server.faults.add("/src/big.bin", "ignore_if_range")
    result = download(f"{server.base_url}/src/big.bin", dest, retries=1, backoff_s=0)
    assert dest.read_bytes() == CONTENT and result.attempts == 2 and server.faults.requests[-1] == ("/src/big.bin", None)


def test_416_is_believed_only_when_head_confirms_the_size(server, tmp_path):
    dest = tmp_path / "big.bin"
    part = dest.with_name("big.bin.part")
    _cut_off(server, dest)
    part.write_bytes(CONTENT)  # killed after the last byte, before the rename
    assert download(f"{server.base_url}/src/big.bin", dest, retries=0).size == len(CONTENT)
    assert [r for _, r in server.faults.requests[-2:]] == [f"bytes={len(CONTENT)}-", "HEAD"]
    assert dest.read_bytes() == CONTENT

    # The file shrank on the server and the part holds more than it: 416, HEAD disagrees, start again.
    dest.unlink()
    shorter = CONTENT[:300_000]
    (server_www(server) / "src" / "big.bin").write_bytes(shorter)
    part.write_bytes(CONTENT[:500_000])  # an old part without its state file: no If-Range to send
    result = download(f"{server.base_url}/src/big.bin", dest, retries=1, backoff_s=0)
    assert [r for _, r in server.faults.requests[-3:]] == ["bytes=500000-", "HEAD", None]
    assert dest.read_bytes() == shorter and result.attempts == 2


def test_a_verified_download_that_does_not_open_is_refused_for_good(server, tmp_path):
    def refuse(path):
        raise ArchiveError(f"{path.name}: not a zip")

    dest = tmp_path / "out" / "big.bin"
    with pytest.raises(DownloadRefused, match=r"does not open: \.verify-big\.bin: not a zip"):
        download(f"{server.base_url}/src/big.bin", dest, retries=3, validate=refuse)
    assert not list(dest.parent.iterdir()) and len(server.faults.requests) == 1


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://host/a.tif", "only http"), ("http://host/a b.tif", "spaces"), ("https://host/a.tif#x", "fragment"), ("/local/a.tif", "only http")],
)
def test_bad_file_list_lines_are_named(url, problem):
    with pytest.raises(CatalogError, match=problem) as error:
        check_url(SourceFile(source="src", key="src.a", url=url, line=3))
    assert "src/file_list.txt line 3" in str(error.value)


def test_source_folders_whose_name_would_break_keys_are_skipped_and_listed(tmp_path):
    for name in ("alpine", "swiss.alti", "ok_2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "file_list.txt").write_text("http://a/x.tif\n")
    (tmp_path / "no_list").mkdir()
    assert sources(tmp_path) == ["alpine", "ok_2"] and unusable_sources(tmp_path) == ["swiss.alti"]


def _zip(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    ("members", "link", "problem"),
    [
        ({"../evil.tif": b"x"}, None, "escapes the archive"),
        ({"/abs/evil.tif": b"x"}, None, "escapes the archive"),
        ({"bomb.asc": b"0" * 5_000_000}, None, "compression ratio"),
        ({"ok.asc": b"1"}, "link.tif", "is a link"),
    ],
)
def test_unsafe_archives_fail_before_writing(tmp_path, members, link, problem):
    archive = _zip(tmp_path / "a.zip", members, link)
    with pytest.raises(ArchiveError, match=problem) as error:
        extract(archive, tmp_path / "out", **LIMITS)
    assert "a.zip" in str(error.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.tif").exists()


def test_7z_members_are_extracted_and_rasters_listed(tmp_path):
    with py7zr.SevenZipFile(tmp_path / "a.7z", "w") as archive:
        archive.writestr(b"ncols 1\n", "grids/a.asc")
        archive.writestr(b"readme", "README.txt")
    assert [p.name for p in extract(tmp_path / "a.7z", tmp_path / "out", **LIMITS)] == ["a.asc"]
