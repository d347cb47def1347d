"""Promises of README.md and doc/reliability.md, each against a real server process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import pytest
from conftest import listening_sockets, run_processes, start_server, stop_server

import pastset
from pastset.core.naming import scheduler_name
from pastset.errors import PastSetError
from pastset.transport.proxies import lookup, proxy

pytestmark = pytest.mark.timeout(120)


def scheduler(server):
    return proxy(lookup(server.address, scheduler_name(server.run), ""), "", timeout=10)


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", "sub/x", "..", "x/../y", "./x"])
def test_xfunction_names_with_paths_are_refused(server, tmp_path, name):
    outside = tmp_path / "outside.py"  # a real module one step out of PSBIN: it must not load
    outside.write_text("raise SystemExit('loaded from outside PSBIN')\n")
    with pytest.raises(PastSetError, match="X-function names are module names"):
        pastset.PastSet().enter(("x", int), xfunction=name)
    e = pastset.PastSet().enter(("x", int))
    e.move((1,))
    assert e.observe() == (1,)  # nothing was created under that name, the server is fine


def test_timeout_on_move_many_and_ack(server):
    pset = pastset.PastSet()
    full = pset.enter(("full", int))
    full.delta(2)
    full.move((0,))
    with pytest.raises(pastset.PastSetTimeoutError):
        full.move_many([(1,), (2,), (3,)], timeout=0.3)  # room for one more only
    assert full.last() == 2  # what fitted went in; the rest were withdrawn ...
    assert [full.observe(), full.observe()] == [(0,), (1,)]
    full.move((9,))
    assert full.observe(timeout=5) == (9,)  # ... and never arrive later
    assert full.last() == 3

    jobs = pset.enter(("ackjobs", int), leases=True)
    results = pset.enter(("ackres", int))
    results.delta(1)
    results.move((0,))
    jobs.move((5,))
    assert jobs.observe() == (5,)
    with pytest.raises(pastset.PastSetTimeoutError):
        jobs.ack(results, (5,), timeout=0.3)  # no room for the result: neither happens
    assert results.last() == 1
    assert results.observe() == (0,)
    jobs.ack(results, (5,), timeout=5)  # the lease is still held and can be acknowledged now
    assert results.observe(timeout=5) == (5,)
    with pytest.raises(pastset.PastSetValueError, match="nothing to acknowledge"):
        jobs.ack()


def test_a_timed_out_observe_on_a_contended_non_empty_element_takes_nothing(server):
    pset = pastset.PastSet()
    e = pset.enter(("held", int))
    for i in range(5):
        e.move((i,))
    with scheduler(server) as sched:
        assert sched.pause("held")  # non-empty, but unindexed observes are held
        timed_out = []

        def observer() -> None:
            try:
                e.observe(timeout=0.3)  # each thread has its own connection: eight at once
            except pastset.PastSetTimeoutError:
                timed_out.append(1)

        threads = [threading.Thread(target=observer) for _ in range(8)]
        for t in threads:
            t.start()
        for i in range(5, 10):
            e.move((i,))  # moves go on meanwhile
        for t in threads:
            t.join(30)
        assert len(timed_out) == 8
        assert e.first() == 0  # nothing was taken
        sched.resume("held")
    assert [e.observe(timeout=5) for _ in range(10)] == [(i,) for i in range(10)]
    with pytest.raises(pastset.PastSetTimeoutError):
        e.observe(timeout=0.3)


@pytest.mark.parametrize("sync", ["yes", "no"])
def test_psjournalsync_yes_really_syncs(tmp_path, sync):
    strace = shutil.which("strace")
    assert strace, "strace is missing: apt-get install strace (tests/run does it as root)"
    psbin = tmp_path / "psbin"
    psbin.mkdir()
    trace = tmp_path / "trace"
    journal = tmp_path / "journal"
    wrapper = tmp_path / "traced"
    wrapper.write_text(f'#!/bin/sh\nexec {strace} -f -qq -e trace=fsync,fdatasync -o {trace} {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    srv = start_server(psbin, python=str(wrapper), env={"PSJOURNAL": str(journal), "PSJOURNALSYNC": sync})
    try:
        e = pastset.PastSet(run=srv.run, ns=srv.address).enter(("sync", int))
        for i in range(20):
            e.move((i,))
        assert e.observe() == (0,)
    finally:
        stop_server(srv)
    records = [p for p in journal.rglob("*") if p.is_file()]
    assert records and sum(p.stat().st_size for p in records) > 0  # the journal was written
    syncs = [line for line in trace.read_text().splitlines() if "fsync(" in line or "fdatasync(" in line]
    if sync == "yes":
        assert len(syncs) >= 21, syncs  # one per journal record: 20 moves, an observe (and the enter)
    else:
        assert len(syncs) < 5, syncs


def test_a_local_run_binds_loopback_only(tmp_path):
    """Read from the sockets: every listening socket of the run's own processes is on 127.0.0.1."""
    app = tmp_path / "app.py"
    go = tmp_path / "go"
    app.write_text(
        "import os, pathlib, time, pastset\n"
        "p = pastset.PastSet()\n"
        "e = p.enter(('lo', int)); e.move((1,)); e.observe()\n"
        f"pathlib.Path({str(tmp_path / 'run')!r}).write_text(os.environ['PSRUN'])\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\n"
        "p.halt()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    env.update(PSPROCS="1", PSWEB="0")
    run = subprocess.Popen(
        [sys.executable, "-m", "pastset.commands.run", str(app)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = 600
        while not (tmp_path / "run").exists():
            assert run.poll() is None, run.communicate()[1]
            deadline -= 1
            assert deadline > 0, "the app did not start"
            threading.Event().wait(0.05)
        run_id = (tmp_path / "run").read_text()
        pids = {pid for pid, _ in run_processes(run_id)} | {run.pid}
        listening = listening_sockets(pids)
        assert len({port for _, port in listening}) >= 2, listening  # name server/daemon, channel, web page
        assert {address for address, _ in listening} == {"127.0.0.1"}, listening
        go.write_text("")
        assert run.wait(60) == 0, run.communicate()[1]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, 9)
            run.wait()
