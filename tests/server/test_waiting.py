"""Who waits on what: every blocked operation is in its space's registry, on both transports, and shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import start_server, stop_server

import pastset
from pastset.core.naming import scheduler_name
from pastset.errors import PastSetTimeoutError, PastSetTypeError, PastSetValueError, SerialisationError
from pastset.server.overview import elements_of, tasks_of, waiting_of
from pastset.transport.proxies import lookup, proxy

pytestmark = pytest.mark.timeout(120)


def snapshot(server) -> dict:
    with proxy(lookup(server.address, scheduler_name(server.run))) as sched:
        return sched.snapshot()


def waiting_until(server, until, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = snapshot(server)["waiting"]
        if until(rows):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)


@pytest.fixture(params=["auto", "off"], ids=["channel", "pyro"])
def any_server(request, tmp_path, monkeypatch):
    psbin = tmp_path / "psbin"
    psbin.mkdir()
    monkeypatch.setenv("PSCHANNEL", request.param)
    srv = start_server(psbin)
    monkeypatch.setenv("PSNS", srv.address)
    monkeypatch.setenv("PSRUN", srv.run)
    monkeypatch.setenv("PSBIN", str(psbin))
    monkeypatch.delenv("PSTASK", raising=False)
    try:
        yield srv
    finally:
        stop_server(srv)


def test_a_blocked_observe_is_listed_with_its_caller_until_it_completes(any_server):
    pset = pastset.PastSet()
    results = pset.enter(("results", float))
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(results.observe()))
    waiter.start()
    rows = waiting_until(any_server, lambda rows: len(rows) == 1)
    (row,) = rows
    assert (row["op"], row["template"], row["timeout"], row["task"]) == ("observe", "('results', float)", None, "")
    assert row["pid"] == os.getpid() and row["host"] and row["app"]
    assert row["since"] <= time.time()
    results.move((2.5,))
    waiter.join(10)
    assert got == [(2.5,)]
    assert waiting_until(any_server, lambda rows: rows == []) == []


def test_blocked_moves_with_a_timeout_and_the_views(any_server):
    pset = pastset.PastSet()
    pipe = pset.enter(("pipe", int))
    pipe.delta(1)
    pipe.move((1,))
    errors: list = []

    def mover() -> None:
        try:
            pipe.move((2,), timeout=30)
        except PastSetTimeoutError as err:  # pragma: no cover - the test moves on long before
            errors.append(err)

    thread = threading.Thread(target=mover)
    thread.start()
    waiting_until(any_server, lambda rows: [r["op"] for r in rows] == ["move"])
    snap = snapshot(any_server)
    (row,) = waiting_of(snap)
    assert 29 < row["timeout"] <= 30 and row["waited_s"] >= 0 and "pid" in row["who"]
    (element,) = [e for e in elements_of(snap) if e["template"] == "('pipe', <class 'int'>)"]
    assert element["waiting"].endswith(" move")
    assert tasks_of(snap) == []
    pipe.observe()
    thread.join(10)
    assert not errors


def test_pypsmanage_waiting_table_and_json(any_server, tmp_path):
    pset = pastset.PastSet()
    never = pset.enter(("never", str))
    threading.Thread(target=lambda: never.observe(timeout=60), daemon=True).start()
    waiting_until(any_server, lambda rows: len(rows) == 1)
    cmd = [sys.executable, "-m", "pastset.commands.manage", "--ns", any_server.address, "--run", any_server.run]
    env = {k: v for k, v in os.environ.items() if k not in ("PSSECRET",)}
    table = subprocess.run([*cmd[:3], "waiting", *cmd[3:]], capture_output=True, text=True, timeout=30, env=env)
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.splitlines()
    assert header.split()[:5] == ["TASK", "APP", "HOST", "PID", "OP"]
    assert "observe" in line and "('never', str)" in line and str(os.getpid()) in line
    shown = subprocess.run([*cmd[:3], "waiting", "--json", *cmd[3:]], capture_output=True, text=True, timeout=30)
    (row,) = json.loads(shown.stdout)
    assert row["template"] == "('never', str)" and 59 < row["timeout"] <= 60
    elements = subprocess.run([*cmd[:3], "elements", *cmd[3:]], capture_output=True, text=True, timeout=30)
    assert "WAITING" in elements.stdout.splitlines()[0]
    assert "observe" in next(line for line in elements.stdout.splitlines() if "never" in line)
    never.move(("x",))


def test_strict_mode_refuses_a_bare_value_with_a_hint(server):
    pset = pastset.PastSet()
    loose = pset.enter(("results", float))
    loose.move(3.5)  # loose by default, as in pyPastSet
    assert loose.observe() == 3.5
    strict = pset.enter(("results", float), strict=True)
    with pytest.raises(PastSetTypeError, match=r"did you mean \('results', 3.5\)\?"):
        strict.move(3.5)
    with pytest.raises(PastSetValueError, match=r"takes a tuple of 2 value.*did you mean \('results', 1.0\)\?"):
        strict.move((1.0,))  # the tag left out, as classic programs do
    strict.move(("results", 1.0))
    assert strict.observe() == ("results", 1.0)
    with pytest.raises(PastSetValueError, match=r"takes a tuple of 2 value.*did you mean \('results', 2.0\)\?"):
        strict.move_many([("results", 1.5), (2.0,)])  # a bad one in a batch: the batch is refused whole
    assert strict.last() == 2, "nothing of the refused batch was moved"
    single = pset.enter((float,), strict=True)
    with pytest.raises(PastSetTypeError, match=r"did you mean \(2.0,\)\?"):
        single.move(2.0)


def test_strict_mode_from_the_setting(server, monkeypatch):
    monkeypatch.setenv("PSSTRICT", "yes")
    with pytest.raises(PastSetTypeError, match="strict mode"):
        pastset.PastSet().enter(("xs", int)).move_many([1, 2])


def test_serialisation_error_comes_from_the_users_call(server):
    element = pastset.PastSet().enter(("odd", object))
    with pytest.raises(SerialisationError) as caught:
        element.move((object(),))
    frames = [str(entry.path) for entry in caught.traceback]
    assert frames[0] == __file__
    assert not any("msgpack" in name or name.endswith("wire.py") for name in frames), frames
