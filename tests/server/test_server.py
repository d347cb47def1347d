"""The contract through a real server process, plus what only a server can show."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import start_server, stop_server

import pastset
from pastset.core.naming import scheduler_name
from pastset.errors import (
    AppNotFoundError,
    ElementDeletedError,
    ExpiredError,
    PastSetConnectionError,
    PastSetTimeoutError,
    PastSetTypeError,
    SerialisationError,
    XFunctionError,
)
from pastset.transport.proxies import lookup, proxy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(store_server):
    """Every contract test here runs on each store: the built-in server, one Redis, a Redis Cluster."""
    return store_server


def test_simple_numbering_and_tuple_types_survive(server):
    pset = pastset.PastSet()
    e = pset.enter(("Test", int, float))
    assert (e.first(), e.last()) == (0, 0)
    e.move((42, 3.14))
    assert (e.first(), e.last()) == (0, 1)
    assert e.observe() == (42, 3.14)
    assert (e.first(), e.last()) == (1, 1)
    e.move((1, (2, (3,)), [4, (5,)], {6}, 1 + 2j, b"x"))
    got = e.observe(1)
    assert got == (1, (2, (3,)), [4, (5,)], {6}, 1 + 2j, b"x")
    assert type(got[1][1]) is tuple and type(got[2]) is list
    assert e.template() == ("Test", int, float)


def test_equal_templates_share_an_element_and_types_distinguish(server):
    a = pastset.PastSet().enter(("Test", int, float))
    b = pastset.PastSet().enter(("Test", int, float))
    c = pastset.PastSet().enter(("Test", int, complex))
    a.move((1, 1.0))
    assert b.last() == 1
    assert c.last() == 0


def test_numpy_array_crosses_whole(server):
    e = pastset.PastSet().enter(("m", np.ndarray))
    arr = np.random.default_rng(1).random((64, 64))
    e.move(("m", arr))
    back = e.observe()[1]
    assert back.dtype == arr.dtype and np.array_equal(back, arr)
    big = np.random.default_rng(2).random((512, 256))  # 1 MiB: out of band on the channel
    e.move(("big", big))
    again = e.observe(1)[1]
    assert again.shape == big.shape and np.array_equal(again, big)
    again[0, 0] = -1.0  # the caller's own copy: writable, and the stored tuple is unchanged
    assert np.array_equal(e.observe(1)[1], big)


def test_blocked_observer_does_not_hold_up_others(server):
    pset = pastset.PastSet()
    waiting = pset.enter(("never", int))
    other = pset.enter(("other", int))
    result = []

    def block() -> None:
        try:
            waiting.observe()
        except pastset.PastSetConnectionError:  # the run ended (or was ending) at teardown
            result.append("ended")

    threads = [threading.Thread(target=block, daemon=True) for _ in range(5)]
    for t in threads:
        t.start()
    # The same handle, from this thread, still works at once.
    for i in range(50):
        other.move((i,))
        assert other.observe() == (i,)
    waiting.move((1,))
    deadline = time.monotonic() + 5
    while waiting.first() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waiting.first() == 1


def blocked_on(server, text: str) -> int:
    """Operations blocked now on the element whose template contains ``text``: the run's registry of
    waits, as its scheduler reports it (the same for every store)."""
    with proxy(lookup(server.address, scheduler_name(server.run), ""), "", timeout=10) as scheduler:
        waits = scheduler.snapshot().get("waiting", [])
    return sum(1 for w in waits if text in w["template"])


def wait_blocked(server, text: str, count: int, timeout: float = 20) -> None:
    """Wait until exactly ``count`` calls are blocked on that element (server state, no fixed sleep)."""
    deadline = time.monotonic() + timeout
    while (now := blocked_on(server, text)) != count:
        assert time.monotonic() < deadline, f"{now} calls blocked on {text}, expected {count}"
        time.sleep(0.01)


def test_fifo_release_of_blocked_moves_across_clients(builtin_server):
    server = builtin_server  # the waits registry is read from the built-in store only
    e = pastset.PastSet().enter(("fifo", int))
    e.delta(1)
    e.move((0,))
    threads = []
    for i in range(1, 6):
        t = threading.Thread(target=lambda i=i: pastset.PastSet().enter(("fifo", int)).move((i,)), daemon=True)
        t.start()
        threads.append(t)
        wait_blocked(server, "'fifo'", i)  # each blocks in turn: the order of blocking is what is tested
    assert e.last() == 1
    taken = [e.observe()[0] for _ in range(6)]
    for t in threads:
        t.join(5)
    assert taken == [0, 1, 2, 3, 4, 5]


def test_bag_of_tasks_exactly_once_across_processes(server):
    e = pastset.PastSet().enter(("bag", int))
    results = pastset.PastSet().enter(("res", int, int))
    total, workers = 3000, 4
    code = (
        "import pastset, os\n"
        "p = pastset.PastSet(); bag = p.enter(('bag', int)); res = p.enter(('res', int, int))\n"
        "while True:\n"
        "    (n,) = bag.observe()\n"
        "    if n < 0: break\n"
        "    res.move((n, os.getpid()))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], env=server.env()) for _ in range(workers)]
    try:
        for i in range(total):
            e.move((i,))
        for _ in range(workers):
            e.move((-1,))
        got = [results.observe() for _ in range(total)]
    finally:
        for p in procs:
            p.wait(30)
    with pytest.raises(pastset.PastSetTimeoutError):
        results.observe(timeout=0.5)  # the workers have exited: nothing more comes (no duplicate last)
    assert results.last() == total
    assert sorted(n for n, _ in got) == list(range(total))
    assert len({pid for _, pid in got}) > 1


def test_delelement_wakes_blocked_and_reenter_is_empty(builtin_server):
    server = builtin_server  # the waits registry is read from the built-in store only
    pset = pastset.PastSet()
    e = pset.enter(("del", int))
    e.move((1,))
    e.observe()
    errors = []

    def block() -> None:
        try:
            e.observe()
        except ElementDeletedError as err:
            errors.append(err)

    t = threading.Thread(target=block, daemon=True)
    t.start()
    wait_blocked(server, "'del'", 1)
    pset.delelement(e)
    t.join(5)
    assert len(errors) == 1 and "enter the template again" in str(errors[0])
    for call in (e.first, e.last, e.template, lambda: e.move((2,)), lambda: e.observe(0)):
        with pytest.raises(ElementDeletedError):
            call()
    fresh = pset.enter(("del", int))
    assert (fresh.first(), fresh.last()) == (0, 0)
    fresh.move((5,))
    assert fresh.observe() == (5,)  # old tuples never come back (pyPastSet bug)
    pset.delelement(("del", int))
    with pytest.raises(ElementDeletedError):
        fresh.last()


def test_axe_and_expired_through_server(server):
    e = pastset.PastSet().enter(("axe", int))
    for i in range(5):
        e.move((i,))
    e.observe()
    e.observe()
    e.axe(4)
    with pytest.raises(ExpiredError, match="tuple 1"):
        e.observe(1)
    assert e.observe(2) == (2,)


def test_delta_setting_works_remotely(server):
    # pyPastSet 1.0.7 raised "cannot notify on un-acquired lock" here.
    e = pastset.PastSet().enter(("delta", int))
    assert e.delta() is None
    assert e.delta(3) == 3
    assert e.delta() == 3
    with pytest.raises(PastSetTypeError, match="delta must be a number"):
        e.delta("lots")


def test_timeouts_on_observe_and_move(server):
    e = pastset.PastSet().enter(("t", int))
    start = time.monotonic()
    with pytest.raises(PastSetTimeoutError):
        e.observe(timeout=0.2)
    assert time.monotonic() - start < 5
    e.delta(1)
    e.move((1,))
    with pytest.raises(PastSetTimeoutError):
        e.move((2,), timeout=0.2)
    assert e.last() == 1


# ------------------------------------------------------------- bad input
def test_bad_input_gets_clear_errors_and_nothing_is_stored(server):
    pset = pastset.PastSet()
    with pytest.raises(PastSetTypeError, match="template must be a tuple"):
        pset.enter(["Test", int])
    with pytest.raises(SerialisationError, match="Opaque"):
        pset.enter(("Test", Opaque))
    e = pset.enter(("bad", int))
    with pytest.raises(SerialisationError, match="Opaque"):
        e.move((Opaque(),))
    with pytest.raises(PastSetTypeError, match="index must be an integer"):
        e.observe("0")
    with pytest.raises(PastSetTypeError, match="delta"):
        e.delta([1])
    assert e.last() == 0
    e.move((1,))
    assert e.observe() == (1,)


class Opaque:
    pass


def test_xfunction_errors_name_the_module_and_the_fix(builtin_server):
    server = builtin_server
    pset = pastset.PastSet()
    with pytest.raises(AppNotFoundError, match="'nosuchx' not found.*PSBIN"):
        pset.enter(("x1", int), xfunction="nosuchx")
    (server.psbin / "noelement.py").write_text("X = 1\n")
    with pytest.raises(XFunctionError, match="no class Element"):
        pset.enter(("x2", int), xfunction="noelement")
    (server.psbin / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(XFunctionError, match="boom at import"):
        pset.enter(("x3", int), xfunction="broken")
    (server.psbin / "raiser.py").write_text(
        "import pastset.element\n"
        "class Element(pastset.element.Element):\n"
        "    def move(self, data):\n"
        "        if data[0] < 0: raise ValueError('negative not allowed')\n"
        "        super().move(data)\n"
    )
    e = pset.enter(("x4", int), xfunction="raiser")
    with pytest.raises(XFunctionError, match="'raiser' raised ValueError: negative not allowed") as info:
        e.move((-1,))
    assert "negative not allowed" in (info.value.remote_traceback or "")
    e.move((1,))
    assert e.last() == 1  # the refused move stored nothing, the element still works


def test_old_style_xfunction_module_from_psbin(builtin_server):
    server = builtin_server
    (server.psbin / "xcast.py").write_text(
        "import pastset.element\n"
        "class Element(pastset.element.Element):\n"
        "    def __init__(self, template):\n"
        "        super(Element, self).__init__(template)\n"
        "    def move(self, data):\n"
        "        types = [t if isinstance(t, type) else t.__class__ for t in self.__template]\n"
        "        super(Element, self).move(tuple(c(v) for c, v in zip(types, data)))\n"
        "    def observe(self, index):\n"
        "        data = super(Element, self).observe(index)\n"
        "        if index == -1:\n"
        "            data = data + ('seen',)\n"
        "            super(Element, self).__set_entry(super(Element, self).first() - 1, data)\n"
        "        return data\n"
    )
    pset = pastset.PastSet()
    e = pset.enter(("cast", int, float), xfunction="xcast")
    e.move(("cast", "7", "2.5"))
    assert e.observe(0) == ("cast", 7, 2.5)
    assert e.observe() == ("cast", 7, 2.5, "seen")
    assert e.observe(0) == ("cast", 7, 2.5, "seen")
    # xfunction only matters when the element is created
    again = pset.enter(("cast", int, float), xfunction="does-not-matter")
    assert again.last() == 1


def test_spawn_of_missing_app_is_refused(server):
    with pytest.raises(AppNotFoundError, match="not a file inside PSBIN"):
        pastset.PastSet().spawn("nosuchapp.py", [1, 2])
    with pytest.raises(PastSetTypeError):
        pastset.PastSet().spawn("x.py", 5)


def test_two_runs_on_one_server_never_share_elements(tmp_path, monkeypatch):
    psbin = tmp_path
    srv = start_server(psbin, "--run", "second")
    try:
        a = pastset.PastSet(run=srv.run, ns=srv.address).enter(("shared?", int))
        b = pastset.PastSet(run="second", ns=srv.address).enter(("shared?", int))
        a.move((1,))
        a.move((2,))
        assert (a.last(), b.last()) == (2, 0)
        b.move((3,))
        assert b.observe() == (3,)
        assert a.observe() == (1,)
    finally:
        stop_server(srv)


def test_unreachable_server_says_where_it_looked(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PastSetConnectionError, match=f"127.0.0.1:{port}.*PSNS"):
        pastset.PastSet(ns=f"127.0.0.1:{port}", run="x")
    monkeypatch.delenv("PSNS", raising=False)
    with pytest.raises(pastset.ConfigurationError, match="pypsrun"):
        pastset.PastSet()


def test_dead_server_reported_to_blocked_caller(tmp_path):
    srv = start_server(tmp_path)
    e = pastset.PastSet(run=srv.run, ns=srv.address).enter(("dead", int))
    errors = []

    def block() -> None:
        try:
            e.observe()
        except pastset.PastSetConnectionError as err:
            errors.append(err)

    t = threading.Thread(target=block, daemon=True)
    t.start()
    wait_blocked(srv, "'dead'", 1)
    srv.proc.kill()
    t.join(10)
    stop_server(srv)
    assert len(errors) == 1 and "lost the connection" in str(errors[0])


def test_thousand_clients_blocked_at_once_and_one_more_is_served(builtin_server):
    """At least 1000 connections, each blocked in observe; the server serves the 1001st."""
    server = builtin_server
    count = 1000
    pset = pastset.PastSet()
    gate = pset.enter(("gate", int))
    got: list[int] = []
    lock = threading.Lock()
    threading.stack_size(256 * 1024)
    try:

        def block() -> None:
            value = gate.observe()[0]  # each thread gets its own connection
            with lock:
                got.append(value)

        threads = [threading.Thread(target=block, daemon=True) for _ in range(count)]
        for t in threads:
            t.start()
    finally:
        threading.stack_size(0)
    extra = pastset.PastSet().enter(("extra", int))
    deadline = time.monotonic() + 60
    while True:  # wait until all are connected and blocked: no one has taken anything
        extra.move((1,))
        assert extra.observe() == (1,)
        if _waiting_on(server, "gate") >= count or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert _waiting_on(server, "gate") >= count
    start = time.monotonic()
    extra.move((2,))
    assert extra.observe() == (2,)
    assert time.monotonic() - start < 5
    for i in range(count):
        gate.move((i,))
    for t in threads:
        t.join(30)
    assert sorted(got) == list(range(count))


def _waiting_on(server, name: str) -> int:
    """How many operations the server says wait on the element whose template starts with ``name``."""
    from pastset.core.naming import scheduler_name
    from pastset.transport.proxies import lookup, proxy

    with proxy(lookup(server.address, scheduler_name(server.run))) as sched:
        rows = sched.snapshot()["elements"]
    return sum(row["waiting"] for row in rows if row["template"].startswith(f"({name!r}"))


def _server_threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def test_a_run_with_a_secret_refuses_clients_without_it(tmp_path, monkeypatch):
    srv = start_server(tmp_path, secret="s3cret-of-this-run")
    try:
        monkeypatch.delenv("PSSECRET", raising=False)
        with pytest.raises(PastSetConnectionError, match="needs its secret"):
            pastset.PastSet(run=srv.run, ns=srv.address)
        monkeypatch.setenv("PSSECRET", "wrong")
        with pytest.raises(PastSetConnectionError, match="needs its secret"):
            pastset.PastSet(run=srv.run, ns=srv.address)
        monkeypatch.setenv("PSSECRET", "s3cret-of-this-run")
        e = pastset.PastSet(run=srv.run, ns=srv.address).enter(("secret", int))
        e.move((1,))
        assert e.observe() == (1,)
    finally:
        stop_server(srv)


def test_batch_calls_through_the_server(server):
    e = pastset.PastSet().enter(("batch", int, float))
    e.move_many([(i, i / 2) for i in range(1000)])
    assert e.last() == 1000
    first = e.observe_many(600)
    rest = e.observe_many(600)
    assert first + rest == [(i, i / 2) for i in range(1000)]
    assert e.first() == 1000
    with pytest.raises(PastSetTimeoutError):
        e.observe_many(5, timeout=0.1)
    with pytest.raises(PastSetTypeError):
        e.move_many("not a list")
