"""Opt-in leases: a killed worker loses no job, and every result arrives exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest
from conftest import start_server, stop_server

import pastset
from pastset.core.journal import Journal, read_journal
from pastset.core.space import Space
from pastset.transport.channel import Channel

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(store_server):
    """Every contract test here runs on each store: the built-in server, one Redis, a Redis Cluster."""
    return store_server


WORKER = """
import os, sys, threading, pastset
held = sys.argv[1]
p = pastset.PastSet()
jobs = p.enter(("jobs", int), leases=True)
results = p.enter(("results", int, int))
holding = p.enter(("holding", int, int))
while True:
    (n,) = jobs.observe()
    if n < 0:
        jobs.ack()
        break
    if n % 100 == 50:
        try:
            os.close(os.open(os.path.join(held, str(n)), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass  # handed back after its first holder was killed: do it now
        else:
            holding.move((os.getpid(), n))  # a lease held, no result moved yet: the test kills us here
            threading.Event().wait()
    jobs.ack(results, (n, n * n))   # result and acknowledgement in one request
"""


@pytest.mark.timeout(300)
def test_killed_workers_lose_no_job_and_duplicate_no_result(server, tmp_path):
    pset = pastset.PastSet()
    jobs = pset.enter(("jobs", int), leases=True)
    results = pset.enter(("results", int, int))
    holding = pset.enter(("holding", int, int))
    total = 300
    for n in range(total):
        jobs.move((n,))
    workers: dict[int, subprocess.Popen] = {}

    def start() -> None:
        worker = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)], env=server.env())
        workers[worker.pid] = worker

    for _ in range(4):
        start()
    got: list[tuple[int, int]] = []
    killed: list[int] = []

    def killer() -> None:  # a thread: its own connection, blocked until a worker holds a marked job
        for _ in range(total // 100):
            pid, n = holding.observe(timeout=60)
            workers[pid].send_signal(signal.SIGKILL)  # it holds the lease of job n and will never ack it
            workers[pid].wait()
            killed.append(n)
            start()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        while len(got) < total:
            got.append(results.observe(timeout=60))
        thread.join(60)
        handed_back = jobs.last() - total  # each hand-back is a new tuple at the end of the element
        for _ in workers:
            jobs.move((-1,))
    finally:
        for w in workers.values():
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
    assert sorted(killed) == [50, 150, 250]
    assert handed_back == len(killed)  # exactly the killed workers' jobs came back, nothing else
    assert sorted(n for n, _ in got) == list(range(total))  # every job once, none lost
    assert all(sq == n * n for n, sq in got)
    with pytest.raises(pastset.PastSetTimeoutError):
        results.observe(timeout=0.5)  # and nothing more comes


def test_ack_with_a_result_is_one_request(server, monkeypatch):
    """The result and the acknowledgement travel together: a kill lands before both or after both."""
    pset = pastset.PastSet()
    jobs = pset.enter(("one", int), leases=True)
    results = pset.enter(("one-result", int))
    jobs.move((3,))
    assert jobs.observe() == (3,)
    sent: list[tuple] = []
    exchanges: list[int] = []
    real_call, real_exchange = pastset.PastSet._call, Channel.exchange

    def call(self, *message):
        sent.append(message)
        return real_call(self, *message)

    def exchange(self, *args, **kwargs):
        exchanges.append(1)
        return real_exchange(self, *args, **kwargs)

    monkeypatch.setattr(pastset.PastSet, "_call", call)
    monkeypatch.setattr(Channel, "exchange", exchange)
    jobs.ack(results, (9,))
    monkeypatch.undo()
    assert [m[:4] for m in sent] == [("ack", jobs._eid, results._eid, (9,))]
    assert len(exchanges) <= 1  # one frame on the direct channel (other stores' links: the one _call above)
    assert results.observe(timeout=5) == (9,)
    with pytest.raises(pastset.PastSetValueError, match="nothing to acknowledge"):
        jobs.ack()


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


def restart(srv, tmp_path):
    srv.proc.send_signal(signal.SIGKILL)  # no chance to hand anything back
    srv.proc.wait()
    stop_server(srv)
    return start_server(tmp_path, run="leased")


def test_unacknowledged_leases_survive_a_crash_and_come_back_exactly_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PSJOURNAL", str(tmp_path / "journal"))
    srv = start_server(tmp_path, run="leased")
    try:
        pset = pastset.PastSet(run="leased", ns=srv.address)
        jobs = pset.enter(("jobs", int), leases=True)
        results = pset.enter(("results", int))
        for n in range(6):
            jobs.move((n,))
        assert [jobs.observe() for _ in range(3)] == [(0,), (1,), (2,)]
        jobs.ack(results, (0,))  # job 0: done, its result moved in the same request
        assert jobs.observe_many(2) == [(3,), (4,)]
        jobs.ack()  # job 1: acknowledged without a result
        srv = restart(srv, tmp_path)  # jobs 2, 3 and 4 were never acknowledged
        pset = pastset.PastSet(run="leased", ns=srv.address)
        jobs = pset.enter(("jobs", int), leases=True)
        results = pset.enter(("results", int))
        assert results.last() == 1 and results.observe() == (0,)
        assert (jobs.first(), jobs.last()) == (5, 9)  # 5 was never observed; 2, 3, 4 were moved again
        handed = [jobs.observe() for _ in range(4)]
        assert sorted(handed) == [(2,), (3,), (4,), (5,)]
        jobs.ack(results, (2,))
        srv = restart(srv, tmp_path)  # a second crash hands out again only what is still unacknowledged
        pset = pastset.PastSet(run="leased", ns=srv.address)
        jobs = pset.enter(("jobs", int), leases=True)
        results = pset.enter(("results", int))
        assert [results.observe(i) for i in range(results.last())] == [(0,), (2,)]
        again = [jobs.observe() for _ in range(jobs.last() - jobs.first())]
        assert sorted(again) == sorted(set(handed) - {handed[0]})
        for _ in again:
            jobs.ack()
        srv = restart(srv, tmp_path)  # everything acknowledged: nothing comes back
        jobs = pastset.PastSet(run="leased", ns=srv.address).enter(("jobs", int), leases=True)
        assert jobs.first() == jobs.last()
    finally:
        stop_server(srv)


def test_a_result_and_its_acknowledgement_are_one_journal_record(tmp_path):
    path = tmp_path / "one.journal"
    space = Space("one", journal=Journal(path))
    jobs, results = space.enter(("jobs", int), leases=True), space.enter(("results", int))
    space.element(jobs).move((7,))
    space.element(jobs).observe()
    before = len(list(read_journal(path)))
    space.ack(jobs, space.lease_index(jobs), results, lambda: space.element(results).move((49,)))
    assert list(read_journal(path))[before:] == [(results, "move", (49,), "ack", jobs, 0)]
    again = Space("one", journal=Journal(path))  # acknowledged: nothing handed out again
    assert again.element(jobs).first() == again.element(jobs).last() == 1
