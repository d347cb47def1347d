"""Copy mode for pypsitems: files go to the nodes over SFTP, results come back.

Workers on other hosts cannot read the master's files.  A worker asks for its
item through the tuple space; the stager, in the pypsrun process that holds the
SSH connections of the run, copies the file to a work directory on that host
with SFTP over the launch connection and answers with the remote path.  After
the command ran, the worker asks again and the stager copies every new file of
that work directory back into the experiment's ``outputs/<item>/`` and removes
the work directory.
"""

from __future__ import annotations

import logging
import posixpath
import stat
import threading
from pathlib import Path

import paramiko

import pastset
from pastset.launch.ssh import Connection

__all__ = ["STAGE", "Stager", "reply_template"]

log = logging.getLogger(__name__)

STAGE = ("pypsitems.stage", int, str, str, str, str)


def reply_template(index: int, host: str) -> tuple:
    """The element a worker on ``host`` waits on for the stager's answer about item ``index``."""
    return ("pypsitems.staged", index, host, str)


class Stager:
    """Serves stage requests with SFTP over the run's SSH connections."""

    def __init__(
        self, connections: dict[str, Connection], run: str, ns: str, secret: str, outputs: Path, threads: int = 4
    ) -> None:
        self.connections = connections
        self.root = f"/tmp/pastset-items-{run}"
        self.outputs = outputs
        self._sftp: dict[str, paramiko.SFTPClient] = {}
        self._lock = threading.Lock()
        self.pset = pastset.PastSet(run=run, ns=ns, secret=secret)
        self.requests = self.pset.enter(STAGE)
        self.copied = 0
        for n in range(threads):
            threading.Thread(target=self._serve, name=f"stager-{n}", daemon=True).start()

    def _client(self, host: str) -> paramiko.SFTPClient:
        with self._lock:
            if host not in self._sftp:
                self._sftp[host] = self.connections[host].client.open_sftp()
            return self._sftp[host]

    def _serve(self) -> None:
        while True:
            try:
                _, index, host, kind, path, keep = self.requests.observe()
            except pastset.PastSetError:
                return  # the run ended
            reply = self.pset.enter(reply_template(index, host))
            try:
                answer = self._put(host, index, path) if kind == "put" else self._get(host, index, path, keep)
            except (OSError, KeyError, paramiko.SSHException) as err:
                log.warning("copying item %d %s %s failed: %s", index, kind, host, err)
                answer = f"!{err}"
            try:
                reply.move((answer,))
            except pastset.PastSetError:
                return

    def _put(self, host: str, index: int, path: str) -> str:
        sftp = self._client(host)
        folder = f"{self.root}/{index}"
        for part in (self.root, folder):
            try:
                sftp.mkdir(part, 0o700)
            except OSError:
                pass  # already there
        remote = posixpath.join(folder, Path(path).name)
        sftp.put(path, remote)
        self.copied += 1
        return remote

    def _get(self, host: str, index: int, folder: str, keep: str) -> str:
        sftp = self._client(host)
        target = self.outputs / str(index)
        fetched = 0
        for entry in sftp.listdir_attr(folder):
            remote = posixpath.join(folder, entry.filename)
            if entry.st_mode is not None and stat.S_ISREG(entry.st_mode) and entry.filename != keep:
                target.mkdir(parents=True, exist_ok=True)
                sftp.get(remote, str(target / entry.filename))
                fetched += 1
            sftp.remove(remote)
        sftp.rmdir(folder)
        return str(fetched)
