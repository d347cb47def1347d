"""The server process's core (pastset.server.host): hosting runs, the handshake, leases of callers that left, stop.

A :class:`Server` runs in this process on loopback (its request loop in a
thread where a client must reach it); Pyro5's global settings it changes are
put back after each test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import Pyro5.errors
import pytest
from Pyro5 import config as pyro_config

from pastset.core.naming import FACTORY, scheduler_name, space_name
from pastset.core.waits import Caller
from pastset.errors import ConfigurationError, PastSetValueError, RunEndedError
from pastset.server.host import FactoryService, Server
from pastset.settings import Settings
from pastset.transport.proxies import lookup, proxy

pytestmark = pytest.mark.timeout(60)

SECRET = "host-secret"


@pytest.fixture(autouse=True)
def pyro_settings_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SERVERTYPE", "THREADPOOL_SIZE", "THREADPOOL_SIZE_MIN", "SOCK_NODELAY", "POLLTIMEOUT"):
        monkeypatch.setattr(pyro_config, name, getattr(pyro_config, name))


def make(tmp_path: Path, **settings: str) -> Server:
    return Server(Settings(PSBIN=str(tmp_path), PSSECRET=SECRET, **settings), on_demand=True)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Server]:
    server = make(tmp_path)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
        server.close()
        assert not thread.is_alive()


def test_an_invalid_psstore_is_a_configuration_error_saying_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="^PSSTORE is invalid: .*redis://HOST:PORT"):
        make(tmp_path, PSSTORE="mysql://db:1")


def test_open_hosts_a_run_once_and_names_it_in_the_name_server(serving: Server) -> None:
    space = serving.open("r1", scheduler=True)
    assert serving.open("r1") is space
    assert set(serving.spaces) == {"r1"} and set(serving.schedulers) == {"r1"}
    assert serving.channel is not None, "the channel is on by default (no TLS)"
    assert serving.by_run["r1"].channel_port == serving.channel.port
    for name in (space_name("r1"), scheduler_name("r1")):
        assert str(lookup(serving.address, name, SECRET, timeout=5)).startswith(f"PYRO:{name}@")
    serving.open("r2")
    assert "r2" not in serving.schedulers
    with pytest.raises(Pyro5.errors.NamingError):
        lookup(serving.address, scheduler_name("r2"), SECRET, timeout=5)


def test_the_name_server_refuses_a_client_without_the_run_s_secret(serving: Server) -> None:
    with pytest.raises(Pyro5.errors.CommunicationError, match="secret"):
        lookup(serving.address, FACTORY, "wrong", timeout=5)


def test_the_factory_opens_runs_by_valid_names_only(serving: Server) -> None:
    factory = FactoryService(serving)
    assert factory.open("run-1_a.b").startswith(f"PYRO:{space_name('run-1_a.b')}@")
    assert "run-1_a.b" in serving.spaces
    for bad in ("", "a b", "../x", 5):
        with pytest.raises(PastSetValueError, match="a PastSet name is letters, digits"):
            factory.open(bad)  # type: ignore[arg-type]


def test_a_pyro5_client_s_lease_goes_back_when_its_connection_closes(serving: Server) -> None:
    from pastset import wire

    space = serving.open("who")
    uri = lookup(serving.address, space_name("who"), SECRET, timeout=5)
    with proxy(uri, SECRET, "task-9", timeout=5) as remote:
        eid = wire.decode(remote.call(wire.encode(("enter", ("who", int), None, True))))[1][0]
        remote.call(wire.encode(("move", eid, ("who", 1), None)))
        assert wire.decode(remote.call(wire.encode(("observe", eid, -1, None)))) == (0, ("who", 1))
        assert space.element(eid).first() == 1
    # the connection ended without an ack: its lease goes back to the element (the caller was the connection's)
    deadline = threading.Event()
    for _ in range(500):
        if space.element(eid).last() == 2:
            break
        deadline.wait(0.01)  # polling the element, bounded
    assert space.element(eid).last() == 2, "handed back, as a new tuple, when the connection closed"
    assert space.element(eid).observe(-1) == ("who", 1)


def test_a_caller_that_left_gives_its_leases_back(tmp_path: Path) -> None:
    server = make(tmp_path)
    try:
        space = server.open("leases")
        eid = space.enter(("l", int), None, True)
        element = space.element(eid)
        element.move(("l", 1))
        element.move(("l", 2))
        taken = element.observe(-1)
        index = space.lease_index(eid)
        caller = Caller(task="t")
        caller.leases.append((space, eid, index, taken))
        server.caller_gone(caller)
        assert caller.leases == []
        assert {element.observe(-1), element.observe(-1)} == {("l", 1), ("l", 2)}, "the lease went back"
        assert element.first() == element.last()
    finally:
        server.stop()
        server.close()


def test_stop_ends_every_run_so_blocked_callers_are_told(tmp_path: Path) -> None:
    server = make(tmp_path)
    try:
        space = server.open("ending", scheduler=True)
        eid = space.enter(("e", int))
        errors: list[BaseException] = []

        def observe() -> None:
            try:
                space.element(eid).observe(-1)
            except RunEndedError as err:
                errors.append(err)

        thread = threading.Thread(target=observe)
        thread.start()
        for _ in range(500):
            if space.waits.snapshot():
                break
            threading.Event().wait(0.01)  # polling until it blocks, bounded
        assert space.waits.snapshot(), "the observer blocks"
        server.stop()
        thread.join(10)
        assert errors and "the PastSet server is shutting down" in str(errors[0])
        assert space.ended
    finally:
        server.close()
