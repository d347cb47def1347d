"""Delivery of blocked operations: a dead waiter loses nothing, waits cost no thread, slow X-functions stall no one.

Each test talks to a real server process (``pypsscheduler --ready``) with real
client processes, killed with real signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunningServer, start_server, stop_server

import pastset
from pastset.core.naming import scheduler_name
from pastset.transport.proxies import lookup, proxy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "infra"))

#: A worker: ``count`` threads, each with its own connection, block in an unindexed observe of "jobs".
WORKER = """
import sys, threading
import pastset
count = int(sys.argv[1])
pset = pastset.PastSet()
jobs = pset.enter(("jobs", int))
got = []
def block():
    got.append(jobs.observe())
threads = [threading.Thread(target=block) for _ in range(count)]
for t in threads:
    t.start()
print("started", flush=True)
for t in threads:
    t.join()
print("got", got, flush=True)
"""


def waiting_on(server: RunningServer, name: str) -> int:
    """How many operations the server says wait on the element whose template starts with ``name``."""
    with proxy(lookup(server.address, scheduler_name(server.run))) as sched:
        rows = sched.snapshot()["elements"]
    return sum(row["waiting"] for row in rows if row["template"].startswith(f"({name!r}"))


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    """Poll observable state until ``predicate()`` (bounded; fails the test with ``what``)."""
    import time

    until = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(0.05)


def server_threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def start_workers(server: RunningServer, waiters: int) -> list[subprocess.Popen]:
    """Worker processes holding ``waiters`` blocked observes in all (at most 25 per process)."""
    sizes = [1] * waiters if waiters <= 3 else [25] * (waiters // 25) + ([waiters % 25] if waiters % 25 else [])
    procs = []
    for size in sizes:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(size)],
                env=server.env(),
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
        )
    return procs


def stopped(pid: int) -> bool:
    """True once every thread of process ``pid`` is stopped (a stopped thread reads nothing)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] not in ("T", "t"):
                return False
    return True


def kill_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("when", ["then-move", "while-moving", "reply-unread"])
@pytest.mark.parametrize("waiters", [1, 3, 100])
def test_a_worker_killed_while_blocked_loses_no_job(server, waiters, when):
    pset = pastset.PastSet()
    jobs = pset.enter(("jobs", int))
    procs = start_workers(server, waiters)
    try:
        wait_for(lambda: waiting_on(server, "jobs") == waiters, f"{waiters} blocked observers")
        if when == "then-move":
            kill_all(procs)
            jobs.move_many([(i,) for i in range(waiters)])
        elif when == "while-moving":
            # Stopped first, so that no worker can have read a reply into the program before it dies
            # (a job a live program received is taken, by PastSet's rules); then the kill races the move.
            for proc in procs:
                os.killpg(proc.pid, signal.SIGSTOP)
            wait_for(lambda: all(stopped(proc.pid) for proc in procs), "the workers stopped")
            mover = threading.Thread(
                target=lambda: pastset.PastSet().enter(("jobs", int)).move_many([(i,) for i in range(waiters)])
            )
            mover.start()
            kill_all(procs)
            mover.join(60)
        else:  # the replies reach the workers' sockets, and the workers die before reading them
            for proc in procs:
                os.killpg(proc.pid, signal.SIGSTOP)
            wait_for(lambda: all(stopped(proc.pid) for proc in procs), "the workers stopped")
            jobs.move_many([(i,) for i in range(waiters)])
            wait_for(lambda: jobs.first() == waiters, "every job handed to a stopped worker")
            kill_all(procs)
        assert jobs.last() == waiters
        got = sorted(jobs.observe(timeout=60)[0] for _ in range(waiters))
        assert got == list(range(waiters))  # every job, each exactly once, to the live observer
        assert jobs.first() == jobs.last() == waiters  # and nothing else is left to observe
    finally:
        kill_all(procs)


@pytest.mark.timeout(120)
def test_blocked_observers_cost_no_server_thread(server):
    count = 300
    gate = pastset.PastSet().enter(("gate", int))
    before = server_threads(server.proc.pid)
    got: list[int] = []
    lock = threading.Lock()
    threading.stack_size(256 * 1024)
    try:

        def block() -> None:
            value = gate.observe()[0]  # each thread its own connection
            with lock:
                got.append(value)

        threads = [threading.Thread(target=block, daemon=True) for _ in range(count)]
        for t in threads:
            t.start()
    finally:
        threading.stack_size(0)
    wait_for(lambda: waiting_on(server, "gate") == count, f"{count} blocked observers")
    assert server_threads(server.proc.pid) <= max(before, 10) + 25  # a small constant, not one per waiter
    gate.move_many([(i,) for i in range(count)])
    for t in threads:
        t.join(30)
    assert sorted(got) == list(range(count))


SLOW_IMPORT = """
import os
open({fifo!r} + ".entered", "w").close()
os.close(os.open({fifo!r}, os.O_RDONLY))  # blocks until the test opens the fifo for writing
from pastset.element import Element as Base

class Element(Base):
    pass
"""

SLOW_MOVE = """
import os
from pastset.element import Element as Base

class Element(Base):
    def move(self, data):
        open({fifo!r} + ".entered", "w").close()
        os.close(os.open({fifo!r}, os.O_RDONLY))  # blocks until the test opens the fifo for writing
        super().move(data)
"""


@pytest.fixture
def slow_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningServer, Path]]:
    psbin = tmp_path / "psbin"
    psbin.mkdir()
    fifo = tmp_path / f"gate-{uuid.uuid4().hex[:6]}"
    os.mkfifo(fifo)
    (psbin / "xslowimport.py").write_text(SLOW_IMPORT.format(fifo=str(fifo)))
    (psbin / "xslowmove.py").write_text(SLOW_MOVE.format(fifo=str(fifo)))
    srv = start_server(psbin)
    monkeypatch.setenv("PSNS", srv.address)
    monkeypatch.setenv("PSRUN", srv.run)
    monkeypatch.setenv("PSBIN", str(psbin))
    try:
        yield srv, fifo
    finally:
        try:  # release whatever still waits on the fifo, so the server can stop
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
        stop_server(srv)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("slow", ["import", "move"])
def test_a_slow_x_function_holds_up_no_other_client(slow_server, slow):
    _srv, fifo = slow_server
    done: list[object] = []
    if slow == "move":
        xelement = pastset.PastSet().enter(("slow",), xfunction="xslowmove")

        def slow_call() -> None:
            xelement.move(("slow",))
            done.append("moved")

        def same_element() -> None:
            done.append(xelement.first())  # waits for the move: same element

    else:

        def slow_call() -> None:
            pastset.PastSet().enter(("slow",), xfunction="xslowimport")
            done.append("entered")

        def same_element() -> None:
            pass

    slow_thread = threading.Thread(target=slow_call, daemon=True)
    slow_thread.start()
    entered = Path(str(fifo) + ".entered")
    wait_for(entered.exists, "the X-function reached the fifo")
    other_thread = threading.Thread(target=same_element, daemon=True)
    other_thread.start()
    other = pastset.PastSet()
    fresh = other.enter(("unrelated", int))  # enter takes the space's lock
    for i in range(200):
        fresh.move((i,))
        assert fresh.observe() == (i,)
        assert fresh.first() == fresh.last() == i + 1
    assert done == []  # all of that happened while the X-function was still blocked
    os.close(os.open(fifo, os.O_WRONLY))  # release it
    slow_thread.join(30)
    other_thread.join(30)
    assert "moved" in done or "entered" in done  # and it completed once released
