"""An SFTP server on loopback (asyncssh), so the HPC transfer's ``sftp://`` path runs offline.

sshfs, the client the transfer uses for ``sftp://`` targets, talks to it exactly
as to a cluster's login node. ``read_only`` makes it refuse writes, like a full
or permission-restricted scratch folder; ``drop_after_bytes`` makes it vanish
in the middle of a copy. Like a login node it also runs ``sha256sum -- PATH``
over SSH (paths inside the served root), unless ``shell=False`` (an SFTP-only
account). ``SFTPEndpoint.stats`` counts the bytes written and read over SFTP and
the commands run, so tests can tell a resumed copy and a remote checksum apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncssh


@dataclass(frozen=True)
class SFTPEndpoint:
    host: str
    port: int
    username: str
    password: str
    stats: dict = field(default_factory=dict)  # "written", "read": SFTP bytes; "commands": commands run over SSH

    def url(self, path: str = "/") -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}/{path.lstrip('/')}"


class _PasswordServer(asyncssh.SSHServer):
    def __init__(self, username: str, password: str, authorized_key: str | None) -> None:
        self._username, self._password = username, password
        self._key = asyncssh.import_public_key(authorized_key) if authorized_key else None

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._username and password == self._password

    def public_key_auth_supported(self) -> bool:
        return self._key is not None

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._username and key == self._key


def _exec_factory(root: str, stats: dict):
    """Runs ``sha256sum -- PATH`` as a login node would, with PATH inside ``root`` (the SFTP chroot)."""

    def run(process: asyncssh.SSHServerProcess) -> None:
        stats["commands"].append(process.command)
        argv = shlex.split(process.command or "")
        if len(argv) != 3 or argv[:2] != ["sha256sum", "--"]:
            process.stderr.write(f"{argv[0] if argv else 'sh'}: command not found\n")
            return process.exit(127)
        try:
            with open(os.path.join(root, argv[2].lstrip("/")), "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as error:
            process.stderr.write(f"sha256sum: {argv[2]}: {error.strerror}\n")
            return process.exit(1)
        process.stdout.write(f"{digest}  {argv[2]}\n")
        process.exit(0)

    return run


def _sftp_factory(root: str, read_only: bool, drop_after_bytes: int | None, stats: dict):
    class ChrootSFTPServer(asyncssh.SFTPServer):
        def __init__(self, channel):
            super().__init__(channel, chroot=root.encode())

        def read(self, file_obj, offset, size):
            data = super().read(file_obj, offset, size)
            stats["read"] += len(data)
            return data

        def write(self, file_obj, offset, data):
            stats["written"] += len(data)
            if drop_after_bytes is not None and stats["written"] > drop_after_bytes:
                self.channel.get_connection().abort()  # the node vanishes mid-copy
                raise asyncssh.SFTPConnectionLost("connection dropped by the test server")
            return super().write(file_obj, offset, data)

        def open(self, path, pflags, attrs):
            if read_only and pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_APPEND):
                raise asyncssh.SFTPPermissionDenied("read-only target")
            return super().open(path, pflags, attrs)

        def mkdir(self, path, attrs):
            if read_only:
                raise asyncssh.SFTPPermissionDenied("read-only target")
            return super().mkdir(path, attrs)

    return ChrootSFTPServer


@contextlib.contextmanager
def sftp_server(
    root: str, *, username: str = "gnt", password: str = "gnt-local", read_only: bool = False, drop_after_bytes: int | None = None,
    authorized_key: str | None = None, shell: bool = True,
) -> Iterator[SFTPEndpoint]:
    """Serve ``root`` over SFTP on 127.0.0.1 (free port) from a background event loop; stop on exit.

    ``authorized_key`` (OpenSSH public key text) is accepted for ``username`` besides the password.
    ``drop_after_bytes`` aborts the connection once that many bytes were written (a target that disappears mid-copy).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sftp-server", daemon=True)
    thread.start()

    stats: dict = {"written": 0, "read": 0, "commands": []}

    async def start():
        key = asyncssh.generate_private_key("ssh-ed25519")
        return await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[key],
            server_factory=lambda: _PasswordServer(username, password, authorized_key),
            sftp_factory=_sftp_factory(root, read_only, drop_after_bytes, stats), allow_scp=False,
            process_factory=_exec_factory(root, stats) if shell else None,
        )

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        port = server.sockets[0].getsockname()[1]
        yield SFTPEndpoint("127.0.0.1", port, username, password, stats)
    finally:
        async def stop():
            server.close()
            await server.wait_closed()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
