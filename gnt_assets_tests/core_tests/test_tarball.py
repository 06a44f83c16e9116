"""Reproducible tarballs with a streamed MD5 and an md5sum-compatible sidecar."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from upath import UPath

from gnt_assets.core.tarball import TarballError, TarMember, verify_tarball, write_tarball


def _members(folder: UPath, contents: dict[str, bytes]) -> list[TarMember]:
    members = []
    for name, data in contents.items():
        path = folder / name.replace("/", "_")
        path.write_bytes(data)
        members.append(TarMember.from_path(name, path))
    return members


def test_tarball_layout_md5_and_md5sum_check(tmp_path):
    root = UPath(tmp_path)
    contents = {"LICENSE.pdf": b"%PDF-1.4\n", "metadata.json": b"{}", "files/a.tif": b"x" * 70_000}
    tarball = write_tarball(root / "out" / "src.tar", _members(root, contents))
    data = (root / "out" / "src.tar").read_bytes()
    assert tarball.md5 == hashlib.md5(data).hexdigest() and tarball.size == len(data)
    assert (root / "out" / "src.tar.md5").read_text() == f"{tarball.md5}  src.tar\n"
    check = subprocess.run(["md5sum", "-c", "src.tar.md5"], cwd=tmp_path / "out", capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == list(contents)
        assert {m.mtime for m in tar.getmembers()} == {946684800}
        assert tar.extractfile("files/a.tif").read() == contents["files/a.tif"]
    assert verify_tarball(root / "out" / "src.tar").members == tuple(contents)


@settings(max_examples=15, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z]{1,12}(/[a-z]{1,8})?", fullmatch=True), st.binary(max_size=3000), min_size=1, max_size=4))
def test_same_members_give_identical_bytes(tmp_path_factory, contents):
    root = UPath(tmp_path_factory.mktemp("tar"))
    first = write_tarball(root / "a.tar", _members(root, contents))
    # Rewritten member files (new mtimes on disk) must not change a byte.
    second = write_tarball(root / "b.tar", _members(root, contents))
    assert (root / "a.tar").read_bytes() == (root / "b.tar").read_bytes()
    assert first.md5 == second.md5


@pytest.mark.parametrize("name", ["../x", "/abs", "", "a/../../b"])
def test_unsafe_member_names_are_refused(tmp_path, name):
    root = UPath(tmp_path)
    (root / "f").write_bytes(b"1")
    with pytest.raises(TarballError, match="absolute or climbs out"):
        write_tarball(root / "t.tar", [TarMember.from_path(name, root / "f")])
    assert not (root / "t.tar").exists()


def test_member_that_shrank_fails_and_leaves_no_tarball(tmp_path):
    root = UPath(tmp_path)
    (root / "f").write_bytes(b"12345")
    member = TarMember(arcname="f", size=10, open=lambda: (root / "f").open("rb"))
    with pytest.raises((TarballError, OSError)):
        write_tarball(root / "t.tar", [member])
    assert not (root / "t.tar").exists() and not (root / "t.tar.md5").exists()


def test_member_that_grew_fails_and_leaves_no_tarball(tmp_path):
    root = UPath(tmp_path)
    (root / "f").write_bytes(b"1234567890")
    member = TarMember(arcname="f", size=5, open=lambda: (root / "f").open("rb"))
    with pytest.raises(TarballError, match="'f' grew beyond its listed 5 bytes"):
        write_tarball(root / "t.tar", [member])
    assert not (root / "t.tar").exists() and not (root / "t.tar.md5").exists()


def test_verify_detects_corruption_and_wrong_sidecar(tmp_path):
    root = UPath(tmp_path)
    write_tarball(root / "s.tar", _members(root, {"a": b"abc" * 1000}))
    raw = bytearray((root / "s.tar").read_bytes())
    raw[600] ^= 0xFF
    (root / "s.tar").write_bytes(bytes(raw))
    with pytest.raises(TarballError, match="does not match"):
        verify_tarball(root / "s.tar")
    (root / "s.tar.md5").write_text("nonsense\n")
    with pytest.raises(TarballError, match="not an md5sum line"):
        verify_tarball(root / "s.tar")
