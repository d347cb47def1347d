"""Clients cut off by the network: what they held goes back once the server sees their connection dead.

The client runs on a network-namespace host (tests/infra/netns_hosts.py) whose
link is brought down while it waits in observe; a job is moved at once, handed
to it (nothing tells the server yet that it is gone), and must reach a live
observer once TCP gives up on the unacknowledged reply (TCP_USER_TIMEOUT, from
PSDEADTIME).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import start_server, stop_server

import pastset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "infra"))
from netns_hosts import NetnsHosts
from test_delivery import wait_for, waiting_on

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

LEASED = """
import time, pastset
jobs = pastset.PastSet().enter(("jobs", int), leases=True)
print("got", jobs.observe(), flush=True)
time.sleep(600)  # works on it for ever: never acknowledges
"""

BLOCKED = """
import pastset
jobs = pastset.PastSet().enter(("jobs", int))
print("got", jobs.observe(), flush=True)
"""


def end_remote(remote: subprocess.Popen | None) -> None:
    """End the client started inside the host (its whole group), if it was started."""
    if remote is None:
        return
    try:
        os.killpg(remote.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    remote.wait(10)
    if remote.stdout is not None:
        remote.stdout.close()


def test_a_cut_off_observer_gives_its_job_back(tmp_path, monkeypatch):
    monkeypatch.setenv("PSDEADTIME", "2")
    with NetnsHosts(n=1, prefix="e" + secrets.token_hex(2)) as hosts:
        host = hosts[0]
        srv = start_server(tmp_path, "--host", hosts.gateway_address)
        remote = None
        try:
            monkeypatch.setenv("PSNS", srv.address)
            monkeypatch.setenv("PSRUN", srv.run)
            jobs = pastset.PastSet().enter(("jobs", int))
            remote = host.popen(
                [sys.executable, "-c", BLOCKED],
                env=srv.env(PYTHONPATH=str(Path(pastset.__file__).resolve().parent.parent)),
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            wait_for(lambda: waiting_on(srv, "jobs") == 1, "the remote observer blocked")
            got: list[object] = []
            local = threading.Thread(target=lambda: got.append(jobs.observe(timeout=60)), daemon=True)
            local.start()  # queued behind the remote one
            wait_for(lambda: waiting_on(srv, "jobs") == 2, "the local observer queued behind it")
            host.cut_off()
            jobs.move((42,))  # goes to the remote observer first: nothing says yet that it is gone
            local.join(60)
            assert got == [(42,)]
            assert jobs.first() == jobs.last() == 1
        finally:
            end_remote(remote)
            stop_server(srv)


def test_a_dead_host_s_leased_tuple_is_handed_back(tmp_path, monkeypatch):
    """A worker on a host that goes down (link cut, then every process on it killed: no reset can
    reach the server) received its job on a leased element and never acknowledged it; the job goes
    to a live worker once keepalive finds the connection dead (within a few PSDEADTIME)."""
    import time

    monkeypatch.setenv("PSDEADTIME", "2")
    with NetnsHosts(n=1, prefix="l" + secrets.token_hex(2)) as hosts:
        host = hosts[0]
        srv = start_server(tmp_path, "--host", hosts.gateway_address)
        remote = None
        try:
            monkeypatch.setenv("PSNS", srv.address)
            monkeypatch.setenv("PSRUN", srv.run)
            jobs = pastset.PastSet().enter(("jobs", int), leases=True)
            remote = host.popen(
                [sys.executable, "-c", LEASED],
                env=srv.env(PYTHONPATH=str(Path(pastset.__file__).resolve().parent.parent)),
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            wait_for(lambda: waiting_on(srv, "jobs") == 1, "the remote worker blocked")
            jobs.move((42,))
            assert remote.stdout is not None
            assert remote.stdout.readline() == b"got (42,)\n", "the remote worker holds the job's lease"
            got: list[object] = []
            local = threading.Thread(target=lambda: got.append(jobs.observe(timeout=60)), daemon=True)
            local.start()
            wait_for(lambda: waiting_on(srv, "jobs") == 1, "the local worker waits: the job is leased")
            host.cut_off()  # the host goes down: its link first ...
            os.killpg(remote.pid, signal.SIGKILL)  # ... then everything on it (the reset is lost)
            remote.wait(10)
            cut = time.monotonic()
            local.join(60)
            took = time.monotonic() - cut
            assert got == [(42,)], "the job was handed back to the live worker"
            assert took < 6 * 2, f"handed back after {took:.1f} s, over a few PSDEADTIME (2 s)"
            print(f"the dead host's leased job was handed back after {took:.1f} s")
        finally:
            end_remote(remote)
            stop_server(srv)
