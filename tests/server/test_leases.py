"""Opt-in leases: a killed worker loses no job, and every result arrives exactly once."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading

import pytest

import pastset

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(store_server):
    """Every contract test here runs on each store: the built-in server, one Redis, a Redis Cluster."""
    return store_server


WORKER = """
import os, sys, time, pastset
p = pastset.PastSet()
jobs = p.enter(("jobs", int), leases=True)
results = p.enter(("results", int, int))
while True:
    (n,) = jobs.observe()
    if n < 0:
        jobs.ack()
        break
    time.sleep(0.002)
    jobs.ack(results, (n, n * n))   # result and acknowledgement in one request
"""


def test_killed_workers_lose_no_job_and_duplicate_no_result(server):
    pset = pastset.PastSet()
    jobs = pset.enter(("jobs", int), leases=True)
    results = pset.enter(("results", int, int))
    total = 600
    for n in range(total):
        jobs.move((n,))
    workers: list[subprocess.Popen] = []

    def start() -> None:
        workers.append(subprocess.Popen([sys.executable, "-c", WORKER], env=server.env()))

    for _ in range(4):
        start()
    got: list[tuple[int, int]] = []
    killed = 0
    rng = random.Random(7)
    try:
        while len(got) < total:
            try:
                got.append(results.observe(timeout=0.05))
            except pastset.PastSetTimeoutError:
                pass
            if killed < 6 and len(got) > (killed + 1) * 60:
                victim = rng.choice([w for w in workers if w.poll() is None])
                victim.send_signal(signal.SIGKILL)  # mid-job: it holds a lease it will never ack
                victim.wait()
                killed += 1
                start()
        for _ in workers:
            jobs.move((-1,))
    finally:
        for w in workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
    assert killed == 6
    assert sorted(n for n, _ in got) == list(range(total))  # every job once, none lost
    assert all(sq == n * n for n, sq in got)
    with pytest.raises(pastset.PastSetTimeoutError):
        results.observe(timeout=0.5)  # and nothing more comes
    assert jobs.last() > total + len(workers) - 1  # the killed workers' jobs were handed back


def test_unacknowledged_lease_returns_when_the_thread_connection_closes(server):
    pset = pastset.PastSet()
    jobs = pset.enter(("l2", int), leases=True)
    jobs.move((1,))
    code = "import pastset, os\ne = pastset.PastSet().enter(('l2', int))\nprint(e.observe())\nos._exit(0)\n"
    out = subprocess.run([sys.executable, "-c", code], env=server.env(), capture_output=True, text=True, timeout=30)
    assert out.stdout == "(1,)\n"
    assert jobs.observe(timeout=5) == (1,)  # handed back to the next observer
    jobs.ack()
    with pytest.raises(pastset.PastSetValueError, match="nothing to acknowledge"):
        jobs.ack()


def test_plain_elements_stay_plain(server):
    pset = pastset.PastSet()
    plain = pset.enter(("plain", int))
    plain.move((1,))
    assert plain.observe() == (1,)
    with pytest.raises(pastset.PastSetValueError):
        plain.ack()
    # leases only take effect when the element is created
    again = pset.enter(("plain", int), leases=True)
    again.move((2,))
    assert again.observe() == (2,)
    with pytest.raises(pastset.PastSetValueError):
        again.ack()


def test_acks_are_per_thread_connection(server):
    pset = pastset.PastSet()
    jobs = pset.enter(("l3", int), leases=True)
    jobs.move((1,))
    jobs.move((2,))
    assert jobs.observe() == (1,)
    errors = []

    def other() -> None:
        try:
            jobs.ack()
        except pastset.PastSetValueError as err:
            errors.append(err)

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert len(errors) == 1  # another thread cannot acknowledge this thread's lease
    jobs.ack()
    assert jobs.observe() == (2,)
    jobs.ack()
