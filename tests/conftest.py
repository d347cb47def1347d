"""Shared fixtures: a real PastSet server process per test, and process checks."""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(Path(__file__).resolve().parent / "infra"))


@dataclass
class RunningServer:
    """A server process started for one test."""

    proc: subprocess.Popen
    address: str
    run: str
    psbin: Path
    store: str = ""

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a program that should join this server's run."""
        env = dict(os.environ, PSNS=self.address, PSRUN=self.run, PSBIN=str(self.psbin))
        env.update(extra)
        return env


def start_server(
    psbin: Path,
    *args: str,
    run: str | None = None,
    secret: str = "",
    store: str = "",
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> RunningServer:
    """Start ``pypsscheduler --ready`` and wait for its READY line (no sleeps).

    ``python`` runs it (a wrapper such as strace may stand in); ``env`` adds settings.
    """
    run = run or f"test-{uuid.uuid4().hex[:8]}"
    cmd = [
        python,
        "-m",
        "pastset.commands.server",
        "--scheduler",
        "--run",
        run,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--ready",
        *args,
    ]
    environ = dict(os.environ, PSBIN=str(psbin), PSSECRET=secret, PSSTORE=store, **(env or {}))
    proc = subprocess.Popen(cmd, env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"server did not start: {line!r}")
    return RunningServer(proc, line.split()[1], run, psbin)


def stop_server(server: RunningServer) -> None:
    """Close the lifeline, then insist; the process must be gone afterwards."""
    assert server.proc.stdin is not None
    server.proc.stdin.close()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    if server.proc.stdout is not None:
        server.proc.stdout.close()


@pytest.fixture(autouse=True, scope="session")
def private_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run files and configuration of the tests stay out of the user's own."""
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    os.environ["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("runtime"))
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data"))  # kept run records
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def no_leaked_settings() -> Iterator[None]:
    """PS* variables a test (or a PSCONFHELP helper it ran) set do not reach the next test."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("PS")}
    yield
    for key in [k for k in os.environ if k.startswith("PS")]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)


def _serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str = "") -> Iterator[RunningServer]:
    psbin = tmp_path / "psbin"
    psbin.mkdir()
    srv = start_server(psbin, store=store)
    srv.store = store
    monkeypatch.setenv("PSNS", srv.address)
    monkeypatch.setenv("PSRUN", srv.run)
    monkeypatch.setenv("PSBIN", str(psbin))
    monkeypatch.delenv("PSTASK", raising=False)
    monkeypatch.delenv("PSSTORE", raising=False)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    """A real server process; this test process is pointed at its run."""
    yield from _serve(tmp_path, monkeypatch)


@pytest.fixture
def builtin_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    """The built-in server only, in a module whose ``server`` is parametrised over the stores."""
    yield from _serve(tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def redis_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real redis-server for the session (runs are isolated by key prefix)."""
    from redis_servers import start_redis

    srv = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real 3-master Redis Cluster for the session."""
    from redis_servers import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"), masters=3)
    try:
        yield cluster
    finally:
        cluster.stop()


#: The element stores every contract test runs on.
STORES = ["builtin", "redis", "cluster"]


def store_url(request: pytest.FixtureRequest, kind: str) -> str:
    """PSSTORE for a store kind: empty, the session's Redis, or its Redis Cluster."""
    if kind == "builtin":
        return ""
    return request.getfixturevalue("redis_single" if kind == "redis" else "redis_cluster").url


@pytest.fixture(params=STORES)
def store_server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningServer]:
    """A real server process whose elements live in each store in turn (built-in, Redis, Redis Cluster)."""
    yield from _serve(tmp_path, monkeypatch, store_url(request, request.param))


def _process_text(entry: Path) -> tuple[list[str], list[str], str] | None:
    """argv, environment entries and state of a live process, or None if gone or a zombie."""
    try:
        argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        environ = (entry / "environ").read_bytes().decode(errors="replace").split("\0")
        stat = (entry / "stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] == "Z":
        return None  # a zombie waiting for its parent (this test) to reap it
    return argv, environ, fields[3]  # fields[3]: the session id


def processes_carrying(marker: str) -> list[tuple[int, str]]:
    """Live processes that carry ``marker``, something only this test's processes have.

    ``marker`` must be unique to the test: a run id (in every run process's
    environment as ``PSRUN`` or on its command line after ``--run``), or a path
    inside the test's own temporary directory.  It is never a program name:
    other people's processes on the machine are not ours to look at or end.
    """
    if len(marker) < 8:
        raise ValueError(f"{marker!r} is too short to be unique to one test")
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        seen = _process_text(entry)
        if seen is None:
            continue
        argv, environ, _ = seen
        if any(marker in word for word in argv) or any(marker in pair for pair in environ):
            found.append((int(entry.name), " ".join(argv).strip()))
    return found


def run_processes(run_id: str) -> list[tuple[int, str]]:
    """Live processes of run ``run_id``: ``PSRUN=<run_id>`` in the environment or ``--run <run_id>`` in argv."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        seen = _process_text(entry)
        if seen is None:
            continue
        argv, environ, _ = seen
        if f"PSRUN={run_id}" in environ or any(a == "--run" and b == run_id for a, b in itertools.pairwise(argv)):
            found.append((int(entry.name), " ".join(argv).strip()))
    return found


def session_processes(sid: int) -> list[tuple[int, str]]:
    """Live processes in session ``sid``: what a test started with ``start_new_session=True``
    (its pid is the session id) and everything that inherited the session from it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        seen = _process_text(entry)
        if seen is not None and seen[2] == str(sid):
            found.append((int(entry.name), " ".join(seen[0]).strip()))
    return found


def wait_until_gone(find: Callable[[], list[tuple[int, str]]], timeout: float = 10) -> list[tuple[int, str]]:
    """Poll ``find`` until it finds nothing or ``timeout`` passes; returns what is left."""
    deadline = time.monotonic() + timeout
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def listening_sockets(pids: set[int] | list[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by one of ``pids`` (from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:
                raw, _, port = cols[1].rpartition(":")
                found.append((_address(raw), int(port, 16)))
    return found


def _address(raw: str) -> str:
    if len(raw) == 8:
        return ".".join(str(b) for b in bytes.fromhex(raw)[::-1])
    words = [bytes.fromhex(raw[i : i + 8])[::-1] for i in range(0, 32, 8)]
    return str(ipaddress.IPv6Address(b"".join(words)))


class LiveRun:
    """A pypsrun of ``folder/app`` in a session of its own, with its output in files read while it runs.

    The app announces its run on stderr (``print("RUN", os.environ["PSRUN"], file=sys.stderr)``),
    which gives :attr:`run_id` for ``pypsmanage --run``.  ``env`` are PS* settings (every other
    PS* variable of this process is left out).  :meth:`close` (or leaving a ``with`` block) kills
    the run's whole process group if it is still running, so a failing test leaves nothing behind.
    """

    def __init__(self, folder: Path, app: str, *args: str, **env: str) -> None:
        self.folder = folder
        self.out = folder / "out.txt"
        self.err = folder / "err.txt"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
        environ.update(env)
        self.env = environ
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pastset.commands.run", str(folder / app), *args],
                env=environ,
                cwd=folder,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.run_id = ""
        deadline = time.monotonic() + 60  # a run with remote hosts may take a while to start
        while not self.run_id:
            assert time.monotonic() < deadline and self.proc.poll() is None, self.err.read_text()
            for line in self.err.read_text().splitlines():
                if line.startswith("RUN "):
                    self.run_id = line.split()[1]
            time.sleep(0.05)

    def done(self) -> int:
        return sum(1 for line in self.out.read_text().splitlines() if line.startswith("done "))

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pastset.commands.manage", *args, "--run", self.run_id],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def snapshot(self, view: str) -> object:
        result = self.manage(view, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def element(self, name: str) -> dict:
        """The row of the run's element whose template names ``name``."""
        (row,) = [e for e in self.snapshot("elements") if f"'{name}'" in e["template"]]
        return row

    def wait_quiet_after_pause(self, timeout: float = 30) -> int:
        """After a pause of 'jobs': wait until every job taken is done; return how many were taken.

        The server's own counters say it: 'jobs' first (taken) equals 'done' last (finished).
        """
        deadline = time.monotonic() + timeout
        taken = self.element("jobs")["first"]
        while self.element("done")["last"] < taken:
            assert time.monotonic() < deadline, "the items in hand did not finish"
            time.sleep(0.05)
        return taken

    def wait_done(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.done() < count:
            assert time.monotonic() < deadline, self.out.read_text()
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> LiveRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
