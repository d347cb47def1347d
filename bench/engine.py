"""The server engine under load: 10,000 blocked connections, and stalls caused by one slow caller.

Run: ``python bench/engine.py [--blocked N] [--procs P]`` (pastset only; P4
against Redis at 1000 is in bench/run.py), or ``python bench/engine.py
--against OTHER_CHECKOUT [--rounds R]`` for the stalls of this tree and of
another side by side, in interleaved rounds, with their ratios.  It starts its own server
(``pypsscheduler``-like, on loopback), prints one line per figure, and stops
every process it started by pid.

- **P4 at N.** N connections blocked in an unindexed observe, spread over P
  client processes (bench/helpers.py ``blockers``): the time to connect them
  all, server threads, server RSS per blocked connection, a new client's
  move+observe pair latency (median), and the time one ``move_many`` of N
  tuples takes to release every waiter (each exactly once: every helper
  counts its own), with the server's CPU time during it.
- **Stalls.** The worst pair latency of an unrelated client while a 3 s
  X-function import runs, while a 3 s X-function move runs, and while a
  64 MiB value is moved and observed by another client.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import pastset  # noqa: E402

# The server and helper processes run this checkout's pastset, whatever the working directory.
CHILD_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])))
from harness import cpu_seconds, proc_status, raise_nofile  # noqa: E402

from pastset.core.naming import scheduler_name  # noqa: E402
from pastset.transport.proxies import lookup, proxy  # noqa: E402

RUN = "bench-engine"
SLOW_IMPORT = (
    "import time\ntime.sleep(3)\nfrom pastset.element import Element as Base\n\nclass Element(Base):\n    pass\n"
)
SLOW_MOVE = (
    "import time\nfrom pastset.element import Element as Base\n\n"
    "class Element(Base):\n    def move(self, data):\n        time.sleep(3)\n        super().move(data)\n"
)


def waiting(address: str) -> int:
    with proxy(lookup(address, scheduler_name(RUN))) as sched:
        return sum(row["waiting"] for row in sched.snapshot()["elements"])


def start_server(psbin: Path) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, "-m", "pastset.commands.server", "--scheduler", "--run", RUN]
    argv += ["--host", "127.0.0.1", "--port", "0", "--ready"]
    env = dict(CHILD_ENV, PSBIN=str(psbin), PSLOGLEVEL="error")
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        raise RuntimeError(f"server said {line!r}")
    return proc, line.split()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def pair_us(element: Any, count: int) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        element.move((i, 0.5))
        element.observe()
        times.append((time.perf_counter() - start) * 1e6)
    return times


def p4(address: str, server: subprocess.Popen, n: int, procs: int) -> None:
    pset = pastset.PastSet(run=RUN, ns=address)
    probe = pset.enter(("bench-engine-probe", int, float))
    pair_us(probe, 200)
    idle = proc_status(server.pid)
    shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    helpers = []
    start = time.monotonic()
    try:
        for share in shares:
            argv = [sys.executable, str(HERE / "helpers.py"), "blockers", "pastset", address, RUN, str(share), "-"]
            helpers.append(
                subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                    env=CHILD_ENV,
                )
            )
        for proc in helpers:
            line = proc.stdout.readline()
            if not line.startswith("CONNECTED"):
                raise RuntimeError(f"blockers: {line!r}")
        connect_s = time.monotonic() - start
        until = time.monotonic() + 300
        while waiting(address) < n:
            if time.monotonic() > until:
                raise RuntimeError("the blocked observes never all arrived")
            time.sleep(0.2)
        blocked_s = time.monotonic() - start
        busy = proc_status(server.pid)
        times = pair_us(probe, 1000)
        release = pset.enter(("bench-p4-blocked", int, float))
        start = time.monotonic()
        server_cpu = cpu_seconds(server.pid)
        release.move_many([(i, 0.5) for i in range(n)])
        done = 0
        for proc in helpers:
            line = proc.stdout.readline()
            if not line.startswith("DONE"):
                raise RuntimeError(f"blockers at the end: {line!r}")
            done += int(line.split()[1])
        release_s = time.monotonic() - start
        server_cpu = cpu_seconds(server.pid) - server_cpu
    finally:
        for proc in helpers:
            stop(proc)
    print(f"P4 N={n} in {procs} client processes")
    print(f"  connect all: {connect_s:.1f} s (all blocked after {blocked_s:.1f} s)")
    print(f"  server threads: idle {idle['threads']}, with {n} blocked {busy['threads']}")
    print(
        f"  server RSS: idle {idle['rss'] / 2**20:.1f} MiB, blocked {busy['rss'] / 2**20:.1f} MiB, "
        f"{(busy['rss'] - idle['rss']) / n / 1024:.2f} KiB per blocked connection"
    )
    print(
        f"  a new client's pair with {n} blocked: median {statistics.median(times):.0f} us, "
        f"p99 {sorted(times)[int(len(times) * 0.99)]:.0f} us"
    )
    print(
        f"  one move_many of {n} released {done} waiters (each once) in {release_s:.2f} s "
        f"(server CPU {server_cpu:.2f} s, beside {procs} client processes waking {n} threads on the same cores)"
    )
    pset.close()


class Prober(threading.Thread):
    """An unrelated client doing pairs back to back, keeping each pair's latency and when it ended."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.pset = pastset.PastSet(run=RUN, ns=address)
        self.element = self.pset.enter(("bench-engine-prober", int, float))
        self.samples: list[tuple[float, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            start = time.monotonic()
            self.element.move((i, 0.5))
            self.element.observe()
            end = time.monotonic()
            self.samples.append((end, end - start))
            i += 1

    def worst(self, since: float, until: float) -> tuple[float, int]:
        inside = [lat for end, lat in self.samples if since <= end and end - lat <= until]
        return (max(inside) if inside else float("nan")), len(inside)


def stalls(address: str) -> None:
    prober = Prober(address)
    prober.start()
    time.sleep(0.5)
    other = pastset.PastSet(run=RUN, ns=address)
    base_since = time.monotonic()
    time.sleep(1.0)
    worst, count = prober.worst(base_since, time.monotonic())
    print("Stalls: worst pair latency of an unrelated client")
    print(f"  nothing else going on (1 s): {worst * 1000:.1f} ms over {count} pairs")
    since = time.monotonic()
    other.enter(("bench-slow-import",), xfunction="xbenchslowimport")
    worst, count = prober.worst(since, time.monotonic())
    print(
        f"  during a 3 s X-function import ({time.monotonic() - since:.1f} s): {worst * 1000:.1f} ms over {count} pairs"
    )
    slow = other.enter(("bench-slow-move",), xfunction="xbenchslowmove")
    first_caller = pastset.PastSet(run=RUN, ns=address)
    firsts = threading.Thread(target=lambda: first_caller.enter(("bench-slow-move",)).first(), daemon=True)
    since = time.monotonic()
    mover = threading.Thread(target=lambda: slow.move(("x",)), daemon=True)
    mover.start()
    time.sleep(0.2)
    firsts.start()  # another client asks first() of the X-function element meanwhile
    mover.join()
    firsts.join()
    worst, count = prober.worst(since, time.monotonic())
    print(
        f"  during a 3 s X-function move, first() waiting on it ({time.monotonic() - since:.1f} s): "
        f"{worst * 1000:.1f} ms over {count} pairs"
    )
    # In a process of its own: its client-side encoding and decoding must not hold this process's GIL.
    script = (
        "import sys, time, pastset\n"
        "big = pastset.PastSet(run=sys.argv[1], ns=sys.argv[2]).enter(('bench-big', bytes))\n"
        "value = (b'\\x01' * (64 << 20),)\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
        "big.move(value)\n"
        "assert len(big.observe()[0]) == 64 << 20\n"
        "print('done', flush=True)\n"
    )
    helper = subprocess.Popen(
        [sys.executable, "-c", script, RUN, address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=CHILD_ENV,
    )
    assert helper.stdout is not None and helper.stdin is not None
    helper.stdout.readline()
    since = time.monotonic()
    helper.stdin.write("go\n")
    helper.stdin.flush()
    line = helper.stdout.readline()
    took = time.monotonic() - since
    helper.wait(30)
    assert line.startswith("done"), line
    worst, count = prober.worst(since, time.monotonic())
    print(f"  during a 64 MiB move+observe by another process ({took:.2f} s): {worst * 1000:.1f} ms over {count} pairs")
    prober.stopping.set()
    prober.join(10)


STALLS = {
    "nothing else going on": "nothing else (1 s)",
    "3 s X-function import": "a 3 s X-function import",
    "3 s X-function move": "a 3 s X-function move, first() waiting",
    "64 MiB move+observe": "a 64 MiB move+observe by another process",
}


def _stall_figures(tree: Path) -> dict[str, float]:
    """One ``--only stalls`` run of the engine bench of ``tree``: worst pair latency (ms) by case."""
    out = subprocess.run(
        [sys.executable, str(tree / "bench" / "engine.py"), "--only", "stalls"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree)),
    )
    if out.returncode:
        raise RuntimeError(f"the stalls bench of {tree} failed:\n{out.stderr[-2000:]}")
    figures = {}
    for line in out.stdout.splitlines():
        for key in STALLS:
            if key in line:
                figures[key] = float(line.rsplit(":", 1)[1].split()[0])
    return figures


def compare_stalls(other: Path, rounds: int) -> None:
    """The stall figures of this checkout and of ``other``, in interleaved rounds: medians and their ratios."""
    runs: dict[str, list[dict[str, float]]] = {"this": [], "other": []}
    for _ in range(rounds):
        runs["other"].append(_stall_figures(other))
        runs["this"].append(_stall_figures(HERE.parent))
    print(f"Stalls, worst pair latency of an unrelated client, medians of {rounds} interleaved rounds")
    print(f"  {'while':45} {'this':>10} {'other':>10} {'ratio':>7}")
    for key, label in STALLS.items():
        this = statistics.median(r[key] for r in runs["this"] if key in r)
        that = statistics.median(r[key] for r in runs["other"] if key in r)
        print(f"  {label:45} {this:8.1f}ms {that:8.1f}ms {this / that:6.2f}x")
    print(f"  (this: {HERE.parent}; other: {other})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocked", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=20)
    parser.add_argument("--only", default="p4,stalls")
    parser.add_argument("--against", type=Path, help="another checkout: compare the stalls with it, interleaved")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each with --against")
    options = parser.parse_args()
    if options.against:
        compare_stalls(options.against.resolve(), options.rounds)
        return
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="pastset-bench-engine-") as tmp:
        psbin = Path(tmp)
        (psbin / "xbenchslowimport.py").write_text(SLOW_IMPORT)
        (psbin / "xbenchslowmove.py").write_text(SLOW_MOVE)
        server, address = start_server(psbin)
        try:
            if "stalls" in options.only:
                stalls(address)
            if "p4" in options.only:
                p4(address, server, options.blocked, options.procs)
        finally:
            stop(server)


if __name__ == "__main__":
    main()
