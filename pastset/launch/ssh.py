"""Reaching other hosts: SSH connections (paramiko) and processes started through them.

:func:`connect` opens an SSH connection the way ``ssh`` would: ``~/.ssh/config``
(HostName, User, Port, IdentityFile, ProxyJump, ProxyCommand,
UserKnownHostsFile), ssh-agent and the default keys, and ``known_hosts``.  An
unknown or changed host key is refused with an error that says how to accept
it; PSSSHACCEPT=yes auto-accepts unknown keys for throwaway test clusters.

A remote process gets its environment as one JSON line on its standard input —
never on a command line that other users can read with ``ps`` — and the rest of
that stream is its lifeline.  Its output comes back over the connection and is
copied to ours as it arrives.

When PSSSH is a command other than plain ``ssh`` (``ssh -p 2222``, a wrapper
script), that command is used instead, as pyPastSet did.
"""

from __future__ import annotations

import collections
import getpass
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import paramiko

from pastset.errors import PastSetConnectionError


class _Paramiko:
    """paramiko, imported when first touched.

    Importing paramiko (and the cryptography beneath it) costs tens of
    milliseconds; a run on this machine alone never needs it, and every
    pypsrun, pypsmanage and client would otherwise pay for it at start.
    """

    def __getattr__(self, name: str) -> Any:
        import paramiko as loaded

        return getattr(loaded, name)


if not TYPE_CHECKING:
    paramiko = _Paramiko()

__all__ = ["ChannelProcess", "Connection", "RemoteProcess", "SshCommandProcess", "connect", "env_line"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 8.0
TAIL = 20


def env_line(env: Mapping[str, str]) -> bytes:
    """The first line a remote pastset process reads: its environment as JSON."""
    return (json.dumps(dict(env)) + "\n").encode()


def _ssh_config() -> paramiko.SSHConfig:
    path = Path("~/.ssh/config").expanduser()
    if path.is_file():
        return paramiko.SSHConfig.from_path(str(path))
    return paramiko.SSHConfig()


class Connection:
    """An open SSH connection to one host, and where we are as seen from it."""

    def __init__(self, host: str, client: paramiko.SSHClient, address: str, local_address: str) -> None:
        self.host = host
        self.client = client
        self.address = address  # the host's address we reached
        self.local_address = local_address  # our address on that path

    def start(self, command: str, env: Mapping[str, str], out: IO[bytes], err: IO[bytes]) -> ChannelProcess:
        """Run ``command`` there, handing it ``env`` on stdin."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise PastSetConnectionError(f"host {self.host}: the SSH connection was lost")
        channel = transport.open_session()
        channel.exec_command(command)
        channel.sendall(env_line(env))
        return ChannelProcess(self.host, channel, out, err)

    def close(self) -> None:
        """Close the connection (remote processes see end of file on their lifeline)."""
        self.client.close()


def connect(host: str, accept_unknown: bool = False, timeout: float = CONNECT_TIMEOUT) -> Connection:
    """Open an SSH connection to ``host`` as ``ssh host`` would, or explain why not."""
    config = _ssh_config()
    entry = config.lookup(host)
    hostname = entry.get("hostname", host)
    port = int(entry.get("port", 22))
    user = entry.get("user", getpass.getuser())
    client = paramiko.SSHClient()
    client.load_system_host_keys()
    if Path("/etc/ssh/ssh_known_hosts").is_file():
        client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
    for known in shlex.split(entry.get("userknownhostsfile", "")):
        path = Path(known).expanduser()
        if path.is_file():
            client.load_host_keys(str(path))
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if accept_unknown else paramiko.RejectPolicy())
    sock: Any = None
    where = f"{host} ({user}@{hostname}:{port})"
    try:
        if entry.get("proxyjump"):
            jump = connect(entry["proxyjump"].split(",")[0], accept_unknown, timeout)
            jump_transport = jump.client.get_transport()
            assert jump_transport is not None
            sock = jump_transport.open_channel("direct-tcpip", (hostname, port), ("127.0.0.1", 0))
        elif entry.get("proxycommand"):
            sock = paramiko.ProxyCommand(entry["proxycommand"])
        client.connect(
            hostname,
            port=port,
            username=user,
            key_filename=entry.get("identityfile"),
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=True,
            look_for_keys=True,
            sock=sock,
        )
    except paramiko.BadHostKeyException as err:
        raise PastSetConnectionError(
            f"host {where}: its host key has CHANGED ({err.key.get_name()}); this may be an attack. "
            f"If the host was reinstalled, remove the old key with 'ssh-keygen -R {hostname}' and connect once "
            f"with 'ssh {host} true'"
        ) from None
    except paramiko.AuthenticationException as err:
        raise PastSetConnectionError(
            f"host {where}: authentication refused ({err}); set up key login (ssh-copy-id {host}, "
            "IdentityFile in ~/.ssh/config, or ssh-agent) so that 'ssh {host} true' needs no password"
        ) from None
    except paramiko.SSHException as err:
        if "known_hosts" in str(err):
            raise PastSetConnectionError(
                f"host {where}: its host key is not known. Check and accept it once with 'ssh {host} true' "
                "(it is saved in ~/.ssh/known_hosts), or set PSSSHACCEPT=yes on a throwaway test cluster"
            ) from None
        raise PastSetConnectionError(f"host {where}: SSH failed: {err}") from None
    except TimeoutError:
        raise PastSetConnectionError(f"host {where}: no answer within {timeout:.0f} s (down, or firewalled?)") from None
    except OSError as err:
        raise PastSetConnectionError(f"host {where}: cannot connect: {err.strerror or err}") from None
    transport = client.get_transport()
    assert transport is not None
    transport.set_keepalive(5)
    local, remote = _endpoints(transport, hostname)
    return Connection(host, client, remote, local)


def _endpoints(transport: paramiko.Transport, hostname: str) -> tuple[str, str]:
    try:
        return transport.sock.getsockname()[0], transport.getpeername()[0]
    except (AttributeError, OSError, TypeError):  # a proxy channel: ask the routing table
        remote = socket.gethostbyname(hostname)
        return route_to(remote), remote


def route_to(address: str) -> str:
    """Our address on the route to ``address`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((address, 9))
        return probe.getsockname()[0]


class RemoteProcess:
    """What the launcher needs of a process started on some host."""

    host = ""

    def poll(self) -> int | None:
        """Exit status, or None while running."""
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the exit status (None on timeout)."""
        raise NotImplementedError

    def close_stdin(self) -> None:
        """Close the lifeline: the process stops itself."""
        raise NotImplementedError

    def kill(self) -> None:
        """Cut the process off (its lifeline ends with the connection)."""
        raise NotImplementedError

    def tail(self) -> str:
        """The last lines it wrote to stderr."""
        raise NotImplementedError

    def readline(self, timeout: float) -> str:
        """The first line of its stdout (used to read a server's READY line)."""
        raise NotImplementedError


class _Copier:
    """Copies a stream to a sink as it arrives, keeping the last lines."""

    def __init__(self, sink: IO[bytes], capture_first: bool = False) -> None:
        self.sink = sink
        self.lines: collections.deque[bytes] = collections.deque(maxlen=TAIL)
        self.done = threading.Event()
        self.first: bytes | None = None
        self.first_ready = threading.Event()
        self._capture_first = capture_first
        self._partial = b""

    def feed(self, data: bytes) -> None:
        if self._capture_first and self.first is None:
            self._partial += data
            if b"\n" not in self._partial:
                return
            self.first, _, data = self._partial.partition(b"\n")
            self._partial = b""
            self.first_ready.set()
        self.lines.extend(data.splitlines(keepends=True)[-TAIL:])
        try:
            self.sink.write(data)
            self.sink.flush()
        except (OSError, ValueError):
            pass

    def finish(self) -> None:
        self.first_ready.set()
        self.done.set()


class ChannelProcess(RemoteProcess):
    """A process started over a paramiko channel."""

    def __init__(self, host: str, channel: paramiko.Channel, out: IO[bytes], err: IO[bytes]) -> None:
        self.host = host
        self.channel = channel
        self._out = _Copier(out, capture_first=True)
        self._err = _Copier(err)
        self._exit = threading.Event()
        threading.Thread(target=self._pump, args=(channel.recv, self._out), daemon=True).start()
        threading.Thread(target=self._pump, args=(channel.recv_stderr, self._err), daemon=True).start()

    def _pump(self, read: Any, copier: _Copier) -> None:
        try:
            while True:
                data = read(32768)
                if not data:
                    break
                copier.feed(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        copier.finish()

    def poll(self) -> int | None:
        if self.channel.exit_status_ready():
            return self.channel.recv_exit_status()
        if self.channel.closed:
            return 255
        return None

    def wait(self, timeout: float | None = None) -> int | None:
        if not self.channel.status_event.wait(timeout):
            return None
        self._out.done.wait(5)
        self._err.done.wait(5)
        return self.channel.recv_exit_status()

    def close_stdin(self) -> None:
        try:
            self.channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def kill(self) -> None:
        self.channel.close()

    def tail(self) -> str:
        return b"".join(self._err.lines).decode(errors="replace")

    def readline(self, timeout: float) -> str:
        self._out.first_ready.wait(timeout)
        return (self._out.first or b"").decode(errors="replace")


class SshCommandProcess(RemoteProcess):
    """A process started with the PSSSH command (OpenSSH client or a wrapper)."""

    def __init__(self, ssh: str, host: str, command: str, env: Mapping[str, str]) -> None:
        self.host = host
        argv = [*shlex.split(ssh), host, command]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdin.write(env_line(env))
        self.proc.stdin.flush()
        self._out = _Copier(sys.stdout.buffer, capture_first=True)
        self._err = _Copier(sys.stderr.buffer)
        for stream, copier in ((self.proc.stdout, self._out), (self.proc.stderr, self._err)):
            threading.Thread(target=self._pump, args=(stream, copier), daemon=True).start()

    @staticmethod
    def _pump(stream: IO[bytes], copier: _Copier) -> None:
        for data in iter(lambda: os.read(stream.fileno(), 32768), b""):
            copier.feed(data)
        copier.finish()

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._out.done.wait(5)
        self._err.done.wait(5)
        return code

    def close_stdin(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass

    def kill(self) -> None:
        self.proc.kill()

    def tail(self) -> str:
        return b"".join(self._err.lines).decode(errors="replace")

    def readline(self, timeout: float) -> str:
        self._out.first_ready.wait(timeout)
        return (self._out.first or b"").decode(errors="replace")


def ssh_resolve(ssh: str, host: str) -> str:
    """The address ``ssh -G`` would connect to for ``host`` (for a PSSSH command)."""
    argv = [*shlex.split(ssh), "-G", host]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "hostname":
            host = value.strip()
            break
    try:
        return socket.gethostbyname(host)
    except OSError:
        raise PastSetConnectionError(f"host {host}: cannot resolve its name") from None
