"""Deploying pastset to other hosts, and erasing it again: what ``pypsdeploy`` and ``pypserase`` do.

A run needs the same pastset, with the same Pyro5 and msgpack, on every host.
Without a shared home directory holding a virtual environment, somebody has to
install it on each node; :func:`deploy` does that from here, over the SSH
connections pypsrun would use (:func:`pastset.launch.ssh.connect`), and needs neither
an index nor pip on the node: the wheels come from a :class:`Wheelhouse`.

**Where.**  On each host pastset goes into a virtual environment at
``${XDG_DATA_HOME:-$HOME/.local/share}/pastset/deploy/NODE/VERSION``, expanded
by that host's shell, where NODE is its ``uname -n`` and VERSION pastset's
version.  The node name keeps hosts that share a home directory apart (their
compiled modules may differ, and one host's install must not pull the floor
from under another's running clients); the version lets runs of different
pastset versions use one host at once.  The launcher uses the environment of
its own version when it is there (:func:`deployed_python`).

**What is in it.**  A virtual environment made with ``--system-site-packages``
(so tasks still find what the host's administrator installed, numpy say, as
they would with plain ``python3``) without a pip of its own, holding pastset
and its dependencies exactly as in the wheelhouse, installed with
``--ignore-installed`` so system copies never stand in for them.  Also two
files: ``.pastset-deploy``, made before anything else (erase removes only
directories that carry it), and ``pastset-deploy.json``, written last, naming
the wheelhouse's digest.  A deploy that finds the same digest and an
environment that imports pastset leaves the host alone, so deploying twice is
cheap.

**How.**  Every host at once, in threads: connect, probe (node name, a Python
of the wheels' version, architecture, what is already there), then, unless the
host is up to date, clear the directory, copy the wheels over SFTP, make the
environment and install with the wheelhouse's own pip wheel
(``--no-index --find-links``), check that pastset imports, write the stamp and
drop the copied wheels.  Each host's outcome is a :class:`HostResult`, handed
to a callback as soon as it is known.  Every step is bounded in time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pastset.errors import DeployError, PastSetError
from pastset.launch.ssh import CONNECT_TIMEOUT, Connection, connect, paramiko
from pastset.launch.wheelhouse import Wheelhouse

__all__ = [
    "MARKER",
    "ROOT",
    "STAMP",
    "DeployError",
    "HostResult",
    "deploy",
    "deployed_dir",
    "deployed_python",
    "erase",
]

log = logging.getLogger(__name__)

#: Where deployments live on a host, as a shell expression expanded there.
ROOT = "${XDG_DATA_HOME:-$HOME/.local/share}/pastset/deploy"
MARKER = ".pastset-deploy"
STAMP = "pastset-deploy.json"
COMMAND_TIMEOUT = 60.0
INSTALL_TIMEOUT = 600.0
_VERSION = re.compile(r"[A-Za-z0-9.+!_-]+")


@dataclass(frozen=True)
class HostResult:
    """How deploying or erasing went on one host."""

    host: str
    ok: bool
    seconds: float
    detail: str  # what was done, or why it failed


def deployed_dir(version: str) -> str:
    """The deployment directory of pastset ``version``, as a double-quoted word for the host's shell."""
    if not _VERSION.fullmatch(version):
        raise ValueError(f"not a version string: {version!r}")
    return f'"{ROOT}/$(uname -n)/{version}"'


def deployed_python(version: str) -> str:
    """The Python of a deployment of pastset ``version``, as a double-quoted word for the host's shell."""
    return deployed_dir(version)[:-1] + '/bin/python"'


# ------------------------------------------------------------------ parallel
class _Batch:
    """The SSH connections a batch of hosts has open, so that an interrupted batch can cut them all."""

    def __init__(self, accept_unknown: bool, timeout: float) -> None:
        self.accept_unknown = accept_unknown
        self.timeout = timeout
        self._lock = threading.Lock()
        self._open: set[Connection] = set()
        self.cut = False

    @contextlib.contextmanager
    def connection(self, host: str) -> Iterator[Connection]:
        """An open connection to ``host`` for the ``with`` block."""
        connection = connect(host, self.accept_unknown, self.timeout)
        with self._lock:
            self._open.add(connection)
            if self.cut:
                connection.close()
        try:
            yield connection
        finally:
            with self._lock:
                self._open.discard(connection)
            connection.close()

    def cut_all(self) -> None:
        """Close every open connection: the hosts' work ends at its next step."""
        with self._lock:
            self.cut = True
            for connection in self._open:
                connection.close()


Work = Callable[[str, _Batch], str]


def _each(
    hosts: Sequence[str], work: Work, batch: _Batch, done: Callable[[HostResult], None] | None
) -> list[HostResult]:
    """Run ``work`` for every host in threads; call ``done`` here as each one finishes.

    If this thread is interrupted (Ctrl-C), the connections are cut so that
    the threads end promptly, and the interruption goes on.
    """
    results: dict[str, HostResult] = {}
    if not hosts:
        return []
    pool = ThreadPoolExecutor(max_workers=min(32, len(hosts)), thread_name_prefix="pastset-deploy")
    try:
        futures = [pool.submit(_timed, host, work, batch) for host in hosts]
        for future in as_completed(futures):
            result = future.result()
            results[result.host] = result
            if done is not None:
                done(result)
    except BaseException:
        batch.cut_all()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [results[h] for h in hosts]


def _timed(host: str, work: Work, batch: _Batch) -> HostResult:
    start = time.monotonic()
    try:
        detail, ok = work(host, batch), True
    except PastSetError as err:
        detail, ok = str(err), False
    except (OSError, EOFError, paramiko.SSHException) as err:
        detail, ok = f"host {host}: {type(err).__name__}: {err}", False
    except Exception as err:  # a surprise on one host must not hide how the others went
        log.debug("deploying to %s", host, exc_info=True)
        detail, ok = f"host {host}: unexpected {type(err).__name__}: {err}", False
    log.debug("%s: %s: %s", host, "ok" if ok else "failed", detail)
    return HostResult(host, ok, time.monotonic() - start, detail)


def _sh(connection: Connection, script: str, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
    """Run a POSIX shell script on the host; its exit status and output (stderr included), bounded."""
    transport = connection.client.get_transport()
    if transport is None or not transport.is_active():
        raise DeployError(f"host {connection.host}: the SSH connection was lost")
    deadline = time.monotonic() + timeout
    channel = transport.open_session(timeout=timeout)
    try:
        channel.set_combine_stderr(True)
        channel.exec_command("/bin/sh -c " + shlex.quote(script))
        channel.shutdown_write()
        chunks = []
        while True:
            channel.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = channel.recv(32768)
            except TimeoutError:
                raise DeployError(f"host {connection.host}: no answer from the host within {timeout:.0f} s") from None
            if not data:
                break
            chunks.append(data)
        if not channel.status_event.wait(max(0.1, deadline - time.monotonic())):
            raise DeployError(f"host {connection.host}: the command did not end within {timeout:.0f} s")
        return channel.recv_exit_status(), b"".join(chunks).decode(errors="replace")
    finally:
        channel.close()


def _last_line(output: str, code: int) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {code}"


def _fields(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


# -------------------------------------------------------------------- deploy
def deploy(
    hosts: Sequence[str],
    house: Wheelhouse,
    *,
    python: str | None = None,
    accept_unknown: bool = False,
    timeout: float = CONNECT_TIMEOUT,
    done: Callable[[HostResult], None] | None = None,
) -> list[HostResult]:
    """Install the wheelhouse's pastset on every host, in parallel; one result per host, in order.

    ``python`` is the interpreter on the hosts that the environment is made
    from; by default the first of this Python's own paths, ``pythonX.Y`` and
    ``python3`` that is of the wheels' version.  ``timeout`` bounds connecting.
    """
    candidates = [python] if python else _python_candidates(house.python)
    return _each(
        hosts, lambda host, batch: _deploy_one(host, batch, house, candidates), _Batch(accept_unknown, timeout), done
    )


def _python_candidates(version: str) -> list[str]:
    base = getattr(sys, "_base_executable", "") or sys.executable
    return list(dict.fromkeys([str(Path(base).resolve()), sys.executable, f"python{version}", "python3"]))


def _deploy_one(host: str, batch: _Batch, house: Wheelhouse, candidates: list[str]) -> str:
    with batch.connection(host) as connection:
        found = _probe(connection, house, candidates)
        where = found["dir"]
        stamp = _stamp(found.get("stamp", ""))
        if stamp.get("digest") == house.digest and found.get("imports") == house.version:
            return f"already there: pastset {house.version} in {where}"
        if found.get("exists") and not found.get("ours"):
            raise DeployError(f"host {host}: {where} exists but was not made by pypsdeploy; move it away first")
        fresh = f'set -e\nd={shlex.quote(where)}\nrm -rf "$d"\nmkdir -p "$d/wheels"\n: > "$d/{MARKER}"\n'
        code, out = _sh(connection, fresh)
        if code != 0:
            raise DeployError(f"host {host}: cannot make {where}: {_last_line(out, code)}")
        _upload(connection, house, f"{where}/wheels")
        code, out = _sh(connection, _install_script(house, where, found["python"]), INSTALL_TIMEOUT)
        if code != 0:
            raise DeployError(f"host {host}: installing into {where} failed: {_last_line(out, code)}")
        return f"installed pastset {house.version} in {where}"


def _probe(connection: Connection, house: Wheelhouse, candidates: list[str]) -> dict[str, str]:
    """What the host has: its deployment directory, a suitable Python, and what is there already."""
    major, minor = house.python.split(".")
    tried = " ".join(shlex.quote(c) for c in candidates)
    script = f"""n=$(uname -n)
[ -n "$n" ] || {{ echo "uname -n names no host"; exit 3; }}
d={deployed_dir(house.version)}
echo "dir=$d"
echo "machine=$(uname -m)"
for p in {tried}; do
    if "$p" -I -c 'import sys, venv; sys.exit(sys.version_info[:2] != ({major}, {minor}))' 2>/dev/null; then
        echo "python=$(command -v "$p")"
        break
    fi
done
if [ -e "$d" ]; then echo exists=yes; fi
if [ -f "$d/{MARKER}" ]; then echo ours=yes; fi
if [ -f "$d/{STAMP}" ]; then
    echo "stamp=$(tr -d '\\n' < "$d/{STAMP}")"
    "$d/bin/python" -I -c 'import pastset; print("imports=" + pastset.__version__)' 2>/dev/null
fi
exit 0
"""
    code, out = _sh(connection, script)
    found = _fields(out)
    host = connection.host
    if code != 0 or "dir" not in found:
        raise DeployError(f"host {host}: cannot look around: {_last_line(out, code)}")
    if found.get("machine") != house.machine:
        raise DeployError(
            f"host {host} is {found.get('machine') or 'of an unknown architecture'}, but the wheels made here are "
            f"for {house.machine}: run pypsdeploy from a machine like it"
        )
    if "python" not in found:
        raise DeployError(
            f"host {host}: no Python {house.python} with its venv module there (tried {', '.join(candidates)}); "
            f"the wheels made here need Python {house.python}: install it, or name it with --python"
        )
    return found


def _stamp(text: str) -> dict[str, str]:
    try:
        stamp = json.loads(text) if text else {}
    except ValueError:
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _upload(connection: Connection, house: Wheelhouse, folder: str) -> None:
    """Copy the wheels into ``folder`` on the host over SFTP."""
    sftp = connection.client.open_sftp()
    try:
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(COMMAND_TIMEOUT)
        for name in house.wheels:
            sftp.put(str(house.path / name), f"{folder}/{name}")
    except OSError as err:  # TimeoutError included
        raise DeployError(f"host {connection.host}: copying the wheels to {folder} failed: {err}") from None
    finally:
        sftp.close()


def _install_script(house: Wheelhouse, where: str, python: str) -> str:
    stamp = {
        "version": house.version,
        "digest": house.digest,
        "python": house.python,
        "machine": house.machine,
        "wheels": list(house.wheels),
        "made": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "from": socket.gethostname(),
    }
    pip = f'"$w"/{shlex.quote(house.pip)}/pip'
    want = shlex.quote(house.version)
    return f"""set -e
cd /
d={shlex.quote(where)}
w="$d/wheels"
{shlex.quote(python)} -m venv --without-pip --system-site-packages "$d"
"$d/bin/python" -E {pip} --isolated --disable-pip-version-check --no-input --no-cache-dir install -q \\
    --no-index --find-links "$w" --ignore-installed --no-warn-script-location pastset=={want}
v=$("$d/bin/python" -I -c 'import pastset; print(pastset.__version__)')
[ "$v" = {want} ] || {{ echo "the new environment imports pastset $v, not {house.version}"; exit 5; }}
printf '%s\\n' {shlex.quote(json.dumps(stamp))} > "$d/{STAMP}.new"
mv "$d/{STAMP}.new" "$d/{STAMP}"
rm -rf "$w"
"""


# --------------------------------------------------------------------- erase
def erase(
    hosts: Sequence[str],
    version: str,
    *,
    everything: bool = False,
    accept_unknown: bool = False,
    timeout: float = CONNECT_TIMEOUT,
    done: Callable[[HostResult], None] | None = None,
) -> list[HostResult]:
    """Remove the deployment of pastset ``version`` (``everything``: of every version) from every host.

    Only directories that deploy made (they carry its marker) are removed, and
    the folders above them only if that leaves them empty.
    """
    return _each(
        hosts, lambda host, batch: _erase_one(host, batch, version, everything), _Batch(accept_unknown, timeout), done
    )


def _erase_one(host: str, batch: _Batch, version: str, everything: bool) -> str:
    with batch.connection(host) as connection:
        which = '"$here"/*' if everything else deployed_dir(version)
        script = f"""n=$(uname -n)
[ -n "$n" ] || {{ echo "uname -n names no host"; exit 3; }}
base="{ROOT}"
here="$base/$n"
echo "here=$here"
for d in {which}; do
    [ -e "$d" ] || continue
    if [ -f "$d/{MARKER}" ]; then
        rm -rf "$d" && echo "removed=$d"
    else
        echo "kept=$d"
    fi
done
rmdir "$here" 2>/dev/null; rmdir "$base" 2>/dev/null; rmdir "${{base%/deploy}}" 2>/dev/null
exit 0
"""
        code, out = _sh(connection, script)
    lines = out.splitlines()
    removed = [line.split("=", 1)[1] for line in lines if line.startswith("removed=")]
    kept = [line.split("=", 1)[1] for line in lines if line.startswith("kept=")]
    if code != 0:
        raise DeployError(f"host {host}: erasing failed: {_last_line(out, code)}")
    detail = f"removed {', '.join(removed)}" if removed else f"nothing to remove in {_fields(out).get('here', ROOT)}"
    if kept:
        detail += f"; left {', '.join(kept)} (not made by pypsdeploy)"
    return detail
