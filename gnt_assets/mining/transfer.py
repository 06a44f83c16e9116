"""Copy a partition's packed tiles to the HPC target, verified and resumable (the seed's transfer worker).

Order per partition: the data file first, ``index.json`` last, so a reader on
the cluster never finds an index naming a file that is not there yet. Each
file is uploaded under a temporary name fixed by its content, so a copy cut
off half-way is continued from the size already on the target (appending the
rest) rather than started again; its size and SHA-256 are then taken *on the
target* (SFTP: ``sha256sum`` run over SSH, so nothing is read back over the
network; other targets read the copy back), and only then is it renamed into
place. A resumed copy that does not verify is copied once more from scratch.
On S3 the temporary object is a multipart upload with a SHA-256 per part
(checked by S3 as it receives each part): a cut-off upload is continued from
its parts already received whose size and ETag (MD5) match, and the finished
object's ``ChecksumSHA256`` (S3's checksum of the part checksums) must equal
the one computed from the source. It is then copied into place by S3 with a
full-object SHA-256 (CopyObject, up to 5 GiB), which is what later checks of the
target read: nothing is read back from S3.
A re-run skips files whose target copy already has the right size and
checksum. Nothing is ever deleted from the source; superseded data files on the
target are removed only after the new index is verified there.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from dataclasses import dataclass

from upath import UPath

from gnt_assets.core.errors import TransientError
from gnt_assets.core.packed_tensors import DATA_PREFIX, INDEX_NAME, PackedIndex

BLOCK = 4 * 1024 * 1024
S3_PART = 64 * 1024 * 1024  # at least 5 MiB (S3's smallest part but the last)
S3_COPY_MAX = 5 * 1024**3  # CopyObject's limit; larger objects are moved by s3fs (multipart copy)


class TransferError(TransientError):
    """The target refused, lost or corrupted a copy; the message names partition and file."""


@dataclass(frozen=True)
class CopiedFile:
    name: str
    bytes: int
    sha256: str
    copied: bool  # False: the target already had an identical copy
    sent: int = 0  # bytes sent this time (less than ``bytes`` when a partial copy was continued)


def file_digest(path: UPath) -> tuple[int, str]:
    """Size and SHA-256 of a file on any file system, streamed."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _remote_sha256(path: UPath) -> str | None:
    """SHA-256 computed by the target host itself (sshfs targets), or None where it cannot run commands."""
    execute = getattr(path.fs, "execute", None)
    if execute is None:
        return None
    try:
        return execute(f"sha256sum -- {shlex.quote(path.path)}").stdout.split()[0]
    except Exception:  # an SFTP-only account (no shell): read the copy back instead
        return None


def target_digest(path: UPath) -> tuple[int, str] | None:
    """Size and SHA-256 of a file on the target, computed there when the target can (S3: its checksum)."""
    try:
        if not path.exists():
            return None
        if _is_s3(path):
            size, checksum = _s3_checksum(path)
            if checksum and "-" not in checksum:  # a full-object SHA-256, as copied into place
                return size, base64.b64decode(checksum).hex()
            return file_digest(path)
        remote = _remote_sha256(path)
        return (path.stat().st_size, remote) if remote else file_digest(path)
    except FileNotFoundError:
        return None


def partition_target(root: UPath, country: str, year: str) -> UPath:
    return root / country / str(year)


def _append_from(source: UPath, temp: UPath, start: int) -> int:
    """Write ``source`` from byte ``start`` on to the end of ``temp``; returns the bytes sent."""
    sent = 0
    with source.open("rb") as reader, temp.open("ab" if start else "wb") as writer:
        reader.seek(start)
        while block := reader.read(BLOCK):
            writer.write(block)
            sent += len(block)
    return sent


def _is_s3(path: UPath) -> bool:
    protocol = path.fs.protocol
    return "s3" in (protocol if isinstance(protocol, tuple | list) else (protocol,))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _s3_upload(source: UPath, temp: UPath) -> tuple[int, str]:
    """Upload ``source`` to ``temp`` part by part, continuing an upload left unfinished; returns the bytes sent
    and the ChecksumSHA256 S3 must report for the object."""
    fs = temp.fs
    bucket, key, _ = fs.split_path(temp.path)
    s3 = {"Bucket": bucket, "Key": key}
    open_uploads = [u for u in fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key).get("Uploads", []) if u["Key"] == key]
    if open_uploads:
        upload_id = open_uploads[0]["UploadId"]
        received = {p["PartNumber"]: (p["Size"], p["ETag"]) for p in fs.call_s3("list_parts", **s3, UploadId=upload_id).get("Parts", [])}
    else:
        upload_id = fs.call_s3("create_multipart_upload", **s3, ChecksumAlgorithm="SHA256")["UploadId"]
        received = {}
    sent, parts, digests = 0, [], []
    with source.open("rb") as reader:
        number = 1
        while (body := reader.read(S3_PART)) or number == 1:
            digest = hashlib.sha256(body).digest()
            size, etag = received.get(number, (None, ""))
            if size != len(body) or etag.strip('"') != hashlib.md5(body).hexdigest():
                etag = fs.call_s3("upload_part", **s3, UploadId=upload_id, PartNumber=number, Body=body,
                                  ChecksumAlgorithm="SHA256", ChecksumSHA256=_b64(digest))["ETag"]
                sent += len(body)
            parts.append({"PartNumber": number, "ETag": etag, "ChecksumSHA256": _b64(digest)})
            digests.append(digest)
            number += 1
    fs.call_s3("complete_multipart_upload", **s3, UploadId=upload_id, MultipartUpload={"Parts": parts})
    fs.invalidate_cache(temp.path)
    return sent, f"{_b64(hashlib.sha256(b''.join(digests)).digest())}-{len(digests)}"


def _s3_checksum(path: UPath) -> tuple[int, str]:
    """Size and ChecksumSHA256 S3 holds for an object (``base64`` or ``base64-parts``; '' if none)."""
    bucket, key, _ = path.fs.split_path(path.path)
    head = path.fs.call_s3("head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return head["ContentLength"], head.get("ChecksumSHA256", "")


def _s3_copy_verified(source: UPath, target: UPath, expected: tuple[int, str], label: str) -> int:
    temp = target.parent / f".tmp-{target.name}.{expected[1][:16]}"
    try:
        sent, checksum = _s3_upload(source, temp)
        size, found = _s3_checksum(temp)
        if (size, found.split("-")[0]) != (expected[0], checksum.split("-")[0]):  # the part count is not always shown
            temp.unlink()
            raise TransferError(f"{label}: S3 reports size/ChecksumSHA256 {size}/{found} for {temp}, expected {expected[0]}/{checksum}")
        if expected[0] > S3_COPY_MAX:
            temp.fs.mv(temp.path, target.path)
            return sent
        bucket, key, _ = target.fs.split_path(target.path)
        temp_bucket, temp_key, _ = temp.fs.split_path(temp.path)
        target.fs.call_s3("copy_object", Bucket=bucket, Key=key, CopySource={"Bucket": temp_bucket, "Key": temp_key},
                          ChecksumAlgorithm="SHA256")
        target.fs.invalidate_cache(target.path)
        temp.unlink()
        if _s3_checksum(target) != (expected[0], _b64(bytes.fromhex(expected[1]))):
            target.unlink()
            raise TransferError(f"{label}: S3's SHA-256 of {target} is not the source's {expected[1]}")
        return sent
    except TransferError:
        raise
    except Exception as error:  # parts received stay in the open upload for the next attempt
        raise TransferError(f"{label}: copying {source.name} to {target} failed ({type(error).__name__}: {error})") from error


def _copy_verified(source: UPath, target: UPath, expected: tuple[int, str], label: str) -> int:
    """Copy (or continue copying) ``source`` to ``target`` through a temporary file; returns the bytes sent."""
    temp = target.parent / f".tmp-{target.name}.{expected[1][:16]}"  # the same name when the copy is resumed
    try:
        partial = temp.stat().st_size if temp.exists() else 0
        start = partial if partial <= expected[0] else 0
        sent = _append_from(source, temp, start)
        found = target_digest(temp)
        if found != expected and start:  # the partial copy was not a prefix of this file
            sent += _append_from(source, temp, 0)
            found = target_digest(temp)
        if found != expected:
            temp.unlink()
            raise TransferError(f"{label}: target copy {temp} has size/SHA-256 {found}, expected {expected}")
        if target.exists():
            target.unlink()  # SFTP rename does not overwrite
        temp.fs.mv(temp.path, target.path)
        return sent
    except TransferError:
        raise
    except Exception as error:  # the partial copy stays for the next attempt to continue
        raise TransferError(f"{label}: copying {source.name} to {target} failed ({type(error).__name__}: {error})") from error


def transfer_partition(index: PackedIndex, target_dir: UPath, label: str) -> list[CopiedFile]:
    """Copy ``index``'s data file and index to ``target_dir``; returns what was copied or already there."""
    sources = [index.data_path, index.folder / INDEX_NAME]
    expected = {index.data_file: (index.data_bytes, index.sha256), INDEX_NAME: file_digest(sources[1])}
    actual_data = file_digest(sources[0])
    if actual_data != expected[index.data_file]:
        raise TransferError(f"{label}: source {index.data_path} does not match its index (size/SHA-256 {actual_data}); re-materialize the tiles")
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except Exception as error:
        raise TransferError(f"{label}: cannot create {target_dir} ({type(error).__name__}: {error})") from error
    results = []
    for source in sources:
        target = target_dir / source.name
        wanted = expected[source.name]
        if target_digest(target) == wanted:
            results.append(CopiedFile(source.name, wanted[0], wanted[1], copied=False))
            continue
        sent = (_s3_copy_verified if _is_s3(target) else _copy_verified)(source, target, wanted, label)
        results.append(CopiedFile(source.name, wanted[0], wanted[1], copied=True, sent=sent))
    for stale in target_dir.iterdir():
        if (stale.name.startswith(DATA_PREFIX) and stale.name != index.data_file) or stale.name.startswith(".tmp-"):
            stale.unlink()
    if _is_s3(target_dir):
        _abort_open_uploads(target_dir)
    return results


def _abort_open_uploads(target_dir: UPath) -> None:
    """Unfinished uploads of superseded copies (S3 keeps, and bills, their parts until aborted)."""
    bucket, prefix, _ = target_dir.fs.split_path(target_dir.path)
    listing = target_dir.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=f"{prefix.rstrip('/')}/.tmp-")
    for upload in listing.get("Uploads", []):
        target_dir.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def transfer_problems(index: PackedIndex, target_dir: UPath) -> list[str]:
    """What is missing or different on the target for this partition (the janitor's view)."""
    problems = []
    for source in (index.data_path, index.folder / INDEX_NAME):
        wanted = (index.data_bytes, index.sha256) if source == index.data_path else file_digest(source)
        found = target_digest(target_dir / source.name)
        if found is None:
            problems.append(f"{target_dir / source.name}: missing on the target")
        elif found != wanted:
            problems.append(f"{target_dir / source.name}: size/SHA-256 {found[0]}/{found[1][:12]} differs from the source {wanted[0]}/{wanted[1][:12]}")
    return problems
