"""Plumbing for the benchmark: the processes it starts, A/B rounds, and the result table.

Everything started here is recorded in :class:`Processes` and stopped by its pid
when the benchmark ends, whether it succeeds, fails or is interrupted.  Nothing
is ever stopped by name.  All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOST = "127.0.0.1"


# --------------------------------------------------------------------- processes
class Processes:
    """Every process the benchmark started, so each can be stopped by its pid."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[Any]]] = []
        self._lock = threading.Lock()
        self._dirs: list[str] = []

    def start(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` (a list, never a shell) and remember it under ``name``."""
        proc = subprocess.Popen(list(argv), **kwargs)
        with self._lock:
            self._procs.append((name, proc))
        return proc

    def tempdir(self, prefix: str) -> str:
        """A fresh temporary directory removed at :meth:`stop_all`."""
        path = tempfile.mkdtemp(prefix=prefix)
        self._dirs.append(path)
        return path

    def stop(self, proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
        """Stop one process: close its stdin (our servers stop then), SIGTERM, then SIGKILL, by pid."""
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            try:
                proc.wait(min(grace, 2.0))
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(grace)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with self._lock:
            self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self) -> None:
        """Stop every process still recorded (newest first) and remove the temporary directories."""
        while True:
            with self._lock:
                if not self._procs:
                    break
                _, proc = self._procs[-1]
            try:
                self.stop(proc)
            except Exception as err:  # keep going: the others must be stopped too
                sys.stderr.write(f"bench: could not stop pid {proc.pid}: {err}\n")
                with self._lock:
                    self._procs = [(n, p) for n, p in self._procs if p is not proc]
        for path in self._dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._dirs.clear()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def raise_nofile(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE towards ``wanted`` (children inherit it); return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_status(pid: int) -> dict[str, int]:
    """RSS in bytes and the thread count of process ``pid``, from /proc."""
    out = {"rss": 0, "threads": 0}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    return out


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far, in seconds (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpus() -> list[int]:
    """The CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0))


def pin(pid: int, cpuset: set[int]) -> None:
    """Restrict every thread of process ``pid`` (0: this process) to ``cpuset``.

    Threads created later inherit the affinity of the thread that creates them.
    """
    pid = pid or os.getpid()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.sched_setaffinity(int(tid), cpuset)


@contextlib.contextmanager
def placed(client: set[int], servers: set[int], pids: Sequence[int]) -> Iterator[None]:
    """Run the block with this process on ``client`` CPUs and the ``pids`` on ``servers`` CPUs.

    On this kind of VM a wake-up on another core costs tens of microseconds, and
    the kernel places processes differently from one moment to the next, so
    single-client latencies are measured with a fixed placement.
    """
    everything = set(cpus())
    for pid in pids:
        pin(pid, servers)
    pin(0, client)
    try:
        yield
    finally:
        pin(0, everything)
        for pid in pids:
            with contextlib.suppress(FileNotFoundError):
                pin(pid, everything)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for children: no PastSet/Pyro settings leaking in from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PS", "PYRO_"))}
    env.update(extra)
    return env


def read_line(stream: TextIO | Any, timeout: float, what: str) -> str:
    """Read one line from a child's pipe, failing clearly after ``timeout`` seconds."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        raise RuntimeError(f"{what}: no answer within {timeout:.0f} s")
    line = box[0].decode() if isinstance(box[0], bytes) else box[0]
    if not line:
        raise RuntimeError(f"{what}: the process ended without answering")
    return line.strip()


@dataclass
class Service:
    """A server process the benchmark started: where it listens and its process."""

    name: str
    address: str
    proc: subprocess.Popen[Any]

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    @property
    def port(self) -> int:
        """The server's TCP port."""
        return int(self.address.rpartition(":")[2])


def start_pastset(procs: Processes, run: str = "bench", **settings: str) -> Service:
    """A standalone PastSet server hosting ``run`` on a free loopback port (``settings``: PS* for it)."""
    argv = [sys.executable, "-m", "pastset.commands.server", "--run", run, "--host", HOST, "--port", "0", "--ready"]
    env = clean_env(**settings)
    proc = procs.start("pastset-server", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    line = read_line(proc.stdout, 30, "pastset server")
    if not line.startswith("READY "):
        raise RuntimeError(f"pastset server said {line!r} instead of READY host:port")
    return Service("pastset", line.split()[1], proc)


def start_redis(procs: Processes) -> Service:
    """Debian's redis-server on a free loopback port, no persistence, in its own temp dir."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found; install it (Debian: apt-get install redis-server)")
    port = free_port()
    workdir = procs.tempdir("pastset-bench-redis-")
    argv = [exe, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir]
    argv += ["--daemonize", "no", "--protected-mode", "yes", "--maxclients", "10000", "--loglevel", "warning"]
    proc = procs.start("redis-server", argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import redis

    client = redis.Redis(host=HOST, port=port)
    until = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > until:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"redis-server did not start on port {port}: {err.strip()}") from None
            time.sleep(0.05)
    client.close()
    return Service("redis", f"{HOST}:{port}", proc)


def start_pyro_echo(procs: Processes) -> Service:
    """A bare Pyro5 object (thread server, msgpack accepted) in its own process."""
    argv = [sys.executable, str(HERE / "helpers.py"), "pyro-echo"]
    proc = procs.start("pyro-echo", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_env())
    line = read_line(proc.stdout, 30, "Pyro5 echo server")
    if not line.startswith("READY "):
        raise RuntimeError(f"Pyro5 echo server said {line!r}")
    return Service("pyro5", line.split()[1], proc)


# ------------------------------------------------------------------------ rounds
def interleave(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each variant once per round, alternating A, B, A, B, ...; return the samples.

    Interleaving spreads drift (other load, CPU frequency, caches) over every
    variant alike instead of charging it to whichever ran last.
    """
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name].append(fn())
    return samples


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return float(statistics.median(values))


def per_op_us(fn: Callable[[], object], count: int) -> float:
    """Wall time of ``count`` calls of ``fn`` in microseconds per call."""
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - start) / count * 1e6


def median_us(fn: Callable[[], object], count: int) -> float:
    """The median of ``count`` single-call latencies of ``fn``, in microseconds.

    Robust against the odd long pause (another process on the machine, a GC
    pass), which a mean over the round would charge to whichever variant it hit.
    """
    return median(latencies_us(fn, count))


def latencies_us(fn: Callable[[], object], count: int) -> list[float]:
    """Each of ``count`` calls of ``fn`` timed on its own, in microseconds."""
    out = []
    clock = time.perf_counter
    for _ in range(count):
        start = clock()
        fn()
        out.append((clock() - start) * 1e6)
    return out


# ------------------------------------------------------------------------- table
@dataclass
class Row:
    """One line of the result table.

    ``ratio`` is pastset divided by the comparison (Redis unless the measure
    says otherwise); ``ok`` is None for an informational row without a target.
    """

    mid: str
    measure: str
    pastset: str
    other: str = ""
    ratio: float | None = None
    ref: str = ""
    target: str = ""
    ok: bool | None = None
    notes: list[str] = field(default_factory=list)

    def result(self, assertions: bool) -> str:
        """PASS / MISS against the target, or a dash (no target, or --quick)."""
        if self.ok is None:
            return "—"
        if not assertions:
            return "(quick)"
        return "PASS" if self.ok else "MISS"


def fmt_us(value: float) -> str:
    """Microseconds, or milliseconds above 10 ms."""
    return f"{value / 1000:.2f} ms" if value >= 10_000 else f"{value:.1f} µs"


def fmt_rate(value: float) -> str:
    """Operations per second with a thousands separator."""
    return f"{value:,.0f}/s"


def fmt_bytes(value: float) -> str:
    """A size in MiB or KiB."""
    if abs(value) >= 1 << 20:
        return f"{value / (1 << 20):.1f} MiB"
    return f"{value / 1024:.1f} KiB"


def fmt_ratio(value: float | None) -> str:
    """A ratio as 1.23x."""
    return "" if value is None else f"{value:.2f}x"


def render(rows: list[Row], assertions: bool) -> str:
    """The table as GitHub markdown."""
    head = ["ID", "measure", "pastset", "compared with", "ratio", "pyPastSet 1.0.7", "target", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r.mid, r.measure, r.pastset, r.other, fmt_ratio(r.ratio), r.ref, r.target, r.result(assertions)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


@contextlib.contextmanager
def timed(label: str, log: Callable[[str], None]) -> Iterator[None]:
    """Log how long a block took."""
    start = time.monotonic()
    log(f"{label} ...")
    try:
        yield
    finally:
        log(f"{label} done in {time.monotonic() - start:.1f} s")
