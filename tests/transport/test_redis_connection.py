"""One thread's connection to a Redis store (pastset.transport.redis_connection): how a request's outcome is told.

A :class:`StoreConnection` with a few operations of its own runs against the
session's real redis-server on loopback.  (Failover across a Redis Cluster and
the warning of a write that reached too few replicas are in
tests/server/test_redis_store.py.)
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pastset.errors import BY_NAME, PastSetConnectionError, PastSetValueError
from pastset.transport.redis_address import StoreAddress, parse_store
from pastset.transport.redis_connection import StoreConnection
from pastset.transport.redis_scripts import Keys


class Probe(StoreConnection):
    """A connection whose operations show each kind of outcome."""

    def __init__(self, address: StoreAddress, keys: Keys) -> None:
        super().__init__(address, keys)
        self._ops = {
            "echo": lambda value: self.client.echo(value),
            "refuse": self._refuse,
            "bad": lambda: self.client.execute_command("NOSUCHCOMMAND"),
            "info": lambda eid: self._run("info", self.keys.meta(eid), "last"),
            "write": lambda key: self._send_two([("SET", key, b"1")], key, write=True),
        }

    def _refuse(self) -> None:
        raise PastSetValueError("not like that")


def address(url: str) -> StoreAddress:
    made = parse_store(url)
    assert made is not None
    return made


@pytest.fixture
def probe(redis_single: Any) -> Iterator[Probe]:
    made = Probe(address(redis_single.url), Keys(f"rc-{uuid.uuid4().hex[:8]}"))
    try:
        yield made
    finally:
        made.close()


def test_a_result_is_0_and_the_result(probe: Probe) -> None:
    assert probe.call(("echo", "hi")) == (0, b"hi")


def test_the_connection_is_named_after_its_owner_in_redis(probe: Probe) -> None:
    assert probe.client.client_getname() == probe.owner
    other = Probe(probe.address, probe.keys)
    try:
        assert other.owner != probe.owner, "each connection is an owner of its own"
    finally:
        other.close()


def test_a_pastset_error_is_a_refusal_of_that_class(probe: Probe) -> None:
    assert probe.call(("refuse",)) == (1, "PastSetValueError", "not like that", None)


def test_any_other_redis_error_is_a_remote_error_that_says_redis(probe: Probe) -> None:
    reply = probe.call(("bad",))
    assert reply[:2] == (1, "RemoteError") and reply[2].startswith("Redis: ") and "NOSUCHCOMMAND" in reply[2].upper()
    assert probe.call(("echo", "after")) == (0, b"after"), "the connection is still usable"


def test_a_script_s_refusal_comes_back_as_the_pastset_error_it_names(probe: Probe) -> None:
    reply = probe.call(("info", 404))  # no such element in this run
    assert reply[0] == 1 and reply[1] in BY_NAME and reply[1] != "RemoteError", reply


def test_a_script_missing_from_the_node_is_loaded_again(probe: Probe, redis_single: Any) -> None:
    first = probe.call(("info", 404))
    client = redis_single.client()
    try:
        client.script_flush()  # as on a node that never saw it (a new master after a failover)
        assert client.script_exists(probe.scripts["info"].sha) == [False]
        assert probe.call(("info", 404)) == first
        assert client.script_exists(probe.scripts["info"].sha) == [True]
    finally:
        client.close()


def test_an_unreachable_redis_is_a_connection_error_naming_it_without_its_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there once closed
    with pytest.raises(PastSetConnectionError) as raised:
        Probe(address(f"redis://u:hunter2@127.0.0.1:{port}"), Keys("rc-lost"))
    assert str(raised.value).startswith(f"cannot reach the Redis store redis://u@127.0.0.1:{port}: ")
    assert "hunter2" not in str(raised.value)


def test_a_single_redis_lost_mid_run_is_a_connection_error(tmp_path: Path) -> None:
    from redis_servers import start_redis

    server = start_redis(tmp_path / "redis")
    try:
        probe = Probe(address(server.url), Keys("rc-lost"))
        assert probe.call(("echo", "up")) == (0, b"up")
        server.kill()
        with pytest.raises(PastSetConnectionError, match="^lost the connection to the Redis store: "):
            probe.call(("echo", "down"))
        probe.close()
    finally:
        server.stop()


def test_after_a_short_write_the_next_writes_stop_waiting_for_replicas(
    redis_single: Any, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe(address(redis_single.url + "?wait=1&wait_ms=20"), Keys(f"rc-{uuid.uuid4().hex[:8]}"))
    key = probe.keys.key(1, "w")
    try:
        with caplog.at_level(logging.WARNING, logger="pastset.transport.redis_connection"):
            assert probe.call(("write", key)) == (0, [b"OK"]), "the WAIT's own reply is not handed on"
            assert probe.call(("write", key)) == (0, [b"OK"])
        said = [r.getMessage() for r in caplog.records if "replica" in r.getMessage()]
        assert len(said) == 1, said  # the second write did not wait, so nothing more to say
        assert "reached 0 of 1 replica(s) within 20 ms (wait=1)" in said[0]
    finally:
        probe.client.delete(key)
        probe.close()
