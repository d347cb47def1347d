"""The opt-in journal: a server killed with SIGKILL and restarted recovers its state."""

from __future__ import annotations

import logging
import os
import signal
import stat
import struct
import subprocess
import sys
import threading
from pathlib import Path

import google_crc32c
import pytest
from conftest import start_server, stop_server

import pastset
from pastset import wire
from pastset.commands import journal as journal_command
from pastset.core.journal import HEADER_SIZE, MAGIC, Journal, frame, read_journal
from pastset.core.space import Space
from pastset.errors import JournalError

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


# ----------------------------------------------------------------- integrity


def three_moves(path: Path) -> list[int]:
    """A journal of an element and three moves; the offsets at which each record starts."""
    journal = Journal(path)
    offsets = []
    for record in [("enter", 1, ("t", int), None, False), (1, "move", (1,)), (1, "move", (3,)), (1, "move", (5,))]:
        offsets.append(path.stat().st_size)
        journal.write(record)
    journal.close()
    return offsets


def moved(path: Path) -> list:
    space = Space("check", journal=Journal(path))
    element = space.element(space.enter(("t", int)))
    return [element.observe(i) for i in range(element.last())]


def test_every_record_carries_its_length_sequence_and_checksums(tmp_path):
    path = tmp_path / "f.journal"
    offsets = three_moves(path)
    data = path.read_bytes()
    assert data.startswith(MAGIC) and offsets[0] == len(MAGIC)
    length, crc, sequence = struct.unpack_from("<IIQ", data, offsets[2])
    assert sequence == 3 and offsets[3] - offsets[2] == HEADER_SIZE + length
    assert crc == google_crc32c.value(data[offsets[2] + HEADER_SIZE : offsets[3]])
    assert moved(path) == [(1,), (3,), (5,)]


def flip(path: Path, offset: int, value: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[offset] = data[offset] ^ 0x01 if value is None else value
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_middle_stops_the_start_naming_file_and_offset(tmp_path):
    path = tmp_path / "flip.journal"
    offsets = three_moves(path)
    payload = path.read_bytes()
    at = payload.index(wire.encode((1, "move", (3,))), offsets[2])
    three = at + len(wire.encode((1, "move", (3,)))) - 1
    flip(path, three, 6)  # (3,) would silently become (6,)
    before = path.read_bytes()
    with pytest.raises(JournalError, match=rf"{path} is damaged at offset {offsets[2]}: record 3 fails its checksum"):
        Journal(path)
    assert path.read_bytes() == before  # nothing cut, nothing written


@pytest.mark.parametrize("field", [0, 8, 16])  # the length, the sequence number, the header's own checksum
def test_a_damaged_header_in_the_middle_is_damage_not_a_torn_tail(tmp_path, field):
    path = tmp_path / "len.journal"
    offsets = three_moves(path)
    flip(path, offsets[1] + field + 1, 0x7F)
    with pytest.raises(JournalError, match=rf"damaged at offset {offsets[1]}: a record header fails its checksum"):
        Journal(path)


def test_a_duplicated_record_is_damage(tmp_path):
    path = tmp_path / "dup.journal"
    offsets = three_moves(path)
    data = path.read_bytes()
    path.write_bytes(data[: offsets[3]] + data[offsets[2] : offsets[3]] + data[offsets[3] :])
    with pytest.raises(JournalError, match=rf"offset {offsets[3]}: record 3 follows record 3 \(a duplicated"):
        Journal(path)


def test_a_file_that_is_no_journal_is_refused(tmp_path):
    path = tmp_path / "other.journal"
    path.write_bytes(b"\x10\x00\x00\x00" + b"x" * 16)  # e.g. the length-prefixed format without checksums
    with pytest.raises(JournalError, match=rf"{path} is damaged at offset 0: it does not start with"):
        Journal(path)


@pytest.mark.parametrize(
    ("tail", "why"),
    [
        (b"\x40\x00\x00", "a record header cut short"),
        (None, "a record of"),  # a header written, its payload cut short
        (b"\x00" * 4096, "4096 zero bytes"),  # what a file system may leave after a power loss
    ],
)
def test_a_torn_tail_is_cut_with_a_message_naming_file_and_offset(tmp_path, caplog, tail, why):
    path = tmp_path / "torn.journal"
    three_moves(path)
    good = path.stat().st_size
    if tail is None:
        tail = frame(5, wire.encode((1, "move", (7,))))[:-3]
    with path.open("ab") as f:
        f.write(tail)
    with caplog.at_level(logging.WARNING):
        assert moved(path) == [(1,), (3,), (5,)]
    assert f"journal {path} ends with a torn tail at offset {good} ({why}" in caplog.text
    assert path.stat().st_size == good  # cut off
    space = Space("again", journal=Journal(path))  # the next records follow the good ones
    space.element(space.enter(("t", int))).move((9,))
    assert moved(path) == [(1,), (3,), (5,), (9,)]


def test_a_journal_zeroed_from_the_start_is_a_torn_header(tmp_path, caplog):
    path = tmp_path / "zero.journal"
    path.write_bytes(b"\x00" * 512)
    with caplog.at_level(logging.WARNING):
        space = Space("zero", journal=Journal(path))
    assert "torn tail at offset 0" in caplog.text and space.elements() == []
    assert path.read_bytes() == MAGIC


def test_the_recover_command_keeps_what_precedes_the_damage(tmp_path, capsys):
    path = tmp_path / "run.journal"
    offsets = three_moves(path)
    flip(path, offsets[3] + HEADER_SIZE + 2)
    assert journal_command.main(["check", str(path)]) == 1
    assert f"damaged at offset {offsets[3]}" in capsys.readouterr().out
    damaged = path.read_bytes()
    assert journal_command.main(["recover", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"kept 3 good record(s) in the first {offsets[3]} of {len(damaged)} bytes" in out
    [kept] = tmp_path.glob("run.journal.damaged-*")
    assert kept.read_bytes() == damaged
    assert journal_command.main(["check", str(path)]) == 0
    assert moved(path) == [(1,), (3,)]


def test_a_server_does_not_start_on_a_damaged_journal_and_names_it(tmp_path, monkeypatch):
    directory = tmp_path / "journal"
    directory.mkdir()
    path = directory / "hurt.journal"
    offsets = three_moves(path)
    flip(path, offsets[2] + HEADER_SIZE + 1)
    env = dict(os.environ, PSJOURNAL=str(directory), PSBIN=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "pastset.commands.server", "--run", "hurt", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"journal {path} is damaged at offset {offsets[2]}" in done.stderr
    assert "Traceback" not in done.stderr and "recover" in done.stderr


def test_a_server_restarts_over_a_zeroed_tail_without_a_traceback(tmp_path, monkeypatch):
    journal = tmp_path / "journal"
    monkeypatch.setenv("PSJOURNAL", str(journal))
    srv = start_server(tmp_path, run="zeroed")
    try:
        e = pastset.PastSet(run="zeroed", ns=srv.address).enter(("z", int))
        e.move((1,))
        e.move((2,))
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
    finally:
        stop_server(srv)
    path = journal / "zeroed.journal"
    good = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\x00" * 8192)
    srv = start_server(tmp_path, run="zeroed")
    try:
        e = pastset.PastSet(run="zeroed", ns=srv.address).enter(("z", int))
        assert (e.observe(), e.last()) == ((1,), 2)
    finally:
        stop_server(srv)
    assert path.stat().st_size > good
