"""An SFTP server on loopback (asyncssh), so the HPC transfer's ``sftp://`` path runs offline.

sshfs, the client the transfer uses for ``sftp://`` targets, talks to it exactly
as to a cluster's login node. ``read_only`` makes it refuse writes, like a full
or permission-restricted scratch folder; ``drop_after_bytes`` makes it vanish
in the middle of a copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import asyncssh


@dataclass(frozen=True)
class SFTPEndpoint:
    host: str
    port: int
    username: str
    password: str

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


def _sftp_factory(root: str, read_only: bool, drop_after_bytes: int | None):
    received = [0]

    class ChrootSFTPServer(asyncssh.SFTPServer):
        def __init__(self, channel):
            super().__init__(channel, chroot=root.encode())

        def write(self, file_obj, offset, data):
            received[0] += len(data)
            if drop_after_bytes is not None and received[0] > drop_after_bytes:
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
    authorized_key: str | None = None,
) -> Iterator[SFTPEndpoint]:
    """Serve ``root`` over SFTP on 127.0.0.1 (free port) from a background event loop; stop on exit.

    ``authorized_key`` (OpenSSH public key text) is accepted for ``username`` besides the password.
    ``drop_after_bytes`` aborts the connection once that many bytes were written (a target that disappears mid-copy).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sftp-server", daemon=True)
    thread.start()

    async def start():
        key = asyncssh.generate_private_key("ssh-ed25519")
        return await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[key],
            server_factory=lambda: _PasswordServer(username, password, authorized_key),
            sftp_factory=_sftp_factory(root, read_only, drop_after_bytes), allow_scp=False,
        )

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        port = server.sockets[0].getsockname()[1]
        yield SFTPEndpoint("127.0.0.1", port, username, password)
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
