"""The opt-in journal: a server killed with SIGKILL and restarted recovers its state."""

from __future__ import annotations

import os
import signal
import stat
import threading

import pytest
from conftest import start_server, stop_server

import pastset
from pastset.core.journal import Journal, read_journal
from pastset.core.space import Space

pytestmark = pytest.mark.timeout(120)


def test_kill_and_restart_recovers_moves_pointers_and_delta(tmp_path, monkeypatch):
    journal = tmp_path / "journal"
    monkeypatch.setenv("PSJOURNAL", str(journal))
    srv = start_server(tmp_path, run="durable")
    try:
        pset = pastset.PastSet(run="durable", ns=srv.address)
        jobs = pset.enter(("jobs", int))
        other = pset.enter(("other", str, float))
        gone = pset.enter(("gone", int))
        for i in range(100):
            jobs.move((i,))
        for _ in range(30):
            jobs.observe()
        jobs.axe(10)
        jobs.delta(500)
        other.move(("x", 1.5))
        gone.move((1,))
        pset.delelement(gone)
        srv.proc.send_signal(signal.SIGKILL)  # no chance to save anything
        srv.proc.wait()
    finally:
        stop_server(srv)
    srv = start_server(tmp_path, run="durable")
    try:
        pset = pastset.PastSet(run="durable", ns=srv.address)
        jobs = pset.enter(("jobs", int))
        assert (jobs.first(), jobs.last(), jobs.delta()) == (30, 100, 500)
        assert jobs.observe() == (30,)
        assert jobs.observe(50) == (50,)
        with pytest.raises(pastset.ExpiredError):
            jobs.observe(5)
        assert jobs.observe(15) == (15,)  # axe(10) freed only below 10
        other = pset.enter(("other", str, float))
        assert other.observe() == ("x", 1.5)
        assert pset.enter(("gone", int)).last() == 0  # deleted stays deleted
        jobs.move((100,))
        assert jobs.last() == 101
    finally:
        stop_server(srv)


def test_concurrent_moves_replay_in_the_order_they_happened(tmp_path):
    path = tmp_path / "j.journal"
    space = Space("order", journal=Journal(path))
    eid = space.enter(("o", int))
    element = space.element(eid)

    def mover(k: int) -> None:
        for i in range(500):
            element.move((k * 1000 + i,))

    threads = [threading.Thread(target=mover, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(1234):
        element.observe()
    live = [element.observe(i) for i in range(element.last())]
    again = Space("order", journal=Journal(path))
    recovered = again.element(again.enter(("o", int)))
    assert [recovered.observe(i) for i in range(recovered.last())] == live
    assert recovered.first() == 1234


def test_torn_last_record_is_ignored(tmp_path):
    path = tmp_path / "t.journal"
    journal = Journal(path)
    journal.write(("enter", 1, ("t", int), None, False))
    journal.write((1, "move", (7,)))
    journal.close()
    with path.open("ab") as f:
        f.write(b"\x40\x00\x00\x00partial")  # a crash in the middle of a write
    assert len(list(read_journal(path))) == 2
    space = Space("torn", journal=Journal(path))
    assert space.element(space.enter(("t", int))).observe() == (7,)


def test_journal_file_is_private(tmp_path):
    path = tmp_path / "p.journal"
    Journal(path).write(("enter", 1, ("p", int), None, False))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_tuple_put_back_after_an_unsendable_reply_is_still_there_after_a_restart(tmp_path):
    path = tmp_path / "u.journal"
    space = Space("unobserve", journal=Journal(path))
    element = space.element(space.enter(("u", int)))
    for i in range(3):
        element.move((i,))
    assert element.observe() == (0,)
    assert element.observe() == (1,)
    assert element.unobserve(1) is True  # the reply for (1,) could not be sent
    assert element.unobserve(2) is False  # only the tuple just taken (at first - 1) can go back
    assert element.first() == 1
    again = Space("unobserve", journal=Journal(path))
    recovered = again.element(again.enter(("u", int)))
    assert recovered.first() == 1
    assert recovered.observe() == (1,)
