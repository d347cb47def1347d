"""A client's connection to a space (pastset.transport.link): which link open_link picks, and what each does.

Real parts on loopback, in this process: a Pyro5 daemon whose space object
records the requests it is sent, a :class:`ChannelServer` with a service that
does the same, and the session's redis-server for a store link.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import Pyro5.api
import Pyro5.errors
import pytest
from Pyro5 import config as pyro_config

from pastset import wire
from pastset.core.waits import Caller
from pastset.errors import PastSetConnectionError, SerialisationError
from pastset.transport.channel_server import ChannelServer
from pastset.transport.link import ChannelLink, LinkSpec, PyroLink, StoreLink, open_link
from pastset.transport.redis_address import parse_store
from pastset.transport.redis_store import OPS, RedisStore
from pastset.transport.serving import Reply

pytestmark = pytest.mark.timeout(60)

SECRET = "link-secret"
RUN = "link-run"


class Space:
    """The Pyro5 object: answers each request with what it got."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    @Pyro5.api.expose
    def call(self, request: bytes) -> bytes:
        message = wire.decode(request)
        self.seen.append(message)
        return wire.encode((0, ["pyro", *message]))


class Daemon(Pyro5.api.Daemon):
    def __init__(self) -> None:
        self.handshakes = 0
        super().__init__(host="127.0.0.1", port=0)

    def validateHandshake(self, conn: Any, data: Any) -> Any:
        self.handshakes += 1
        if not isinstance(data, dict) or data.get("secret") != SECRET:
            raise Pyro5.errors.SecurityError("this PastSet run needs its secret")
        return "ok"


class Recorder:
    """The channel's service: answers each request with what it got and who asked."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple, str]] = []

    def start(self, caller: Caller, body: bytes, buffers: list, hooks: Any) -> Reply:
        message = wire.decode_parts(body, buffers)
        self.seen.append((message, caller.task))
        return Reply(wire.encode_parts((0, ["channel", *message])))

    def finish(self, pending: Any, caller: Caller) -> Reply:  # pragma: no cover - nothing waits here
        raise AssertionError("nothing waits")

    def timed_out(self, pending: Any) -> Reply:  # pragma: no cover
        raise AssertionError("nothing waits")


class Pyro:
    def __init__(self, daemon: Daemon, space: Space, uri: str, thread: threading.Thread) -> None:
        self.daemon, self.space, self.uri, self.thread = daemon, space, uri, thread

    def stop(self) -> None:
        if self.thread.is_alive():
            self.daemon.shutdown()
            self.thread.join(10)
            self.daemon.close()
        assert not self.thread.is_alive()


@pytest.fixture
def pyro(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pyro]:
    monkeypatch.setattr(pyro_config, "POLLTIMEOUT", 0.05)
    daemon = Daemon()
    space = Space()
    uri = str(daemon.register(space, "space"))
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    made = Pyro(daemon, space, uri, thread)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def channel() -> Iterator[tuple[ChannelServer, Recorder]]:
    service = Recorder()
    server = ChannelServer("127.0.0.1", 0, SECRET, lambda run: service if run == RUN else None, lambda c: None)
    try:
        yield server, service
    finally:
        server.close()


def spec(uri: str, **extra: Any) -> LinkSpec:
    return LinkSpec(uri=uri, run=RUN, secret=SECRET, task="t-1", deadtime=6.0, where="here:1", **extra)


def test_without_channel_or_store_the_link_goes_through_pyro5(pyro: Pyro) -> None:
    link = open_link(spec(pyro.uri))
    try:
        assert isinstance(link, PyroLink)
        assert link.call(("observe", 3, -1, None)) == (0, ["pyro", "observe", 3, -1, None])
        assert pyro.space.seen == [("observe", 3, -1, None)]
    finally:
        link.close()


def test_a_pyro_link_connects_at_once_and_a_refused_secret_says_so(pyro: Pyro) -> None:
    bad = spec(pyro.uri)
    bad.secret = "wrong"
    with pytest.raises(PastSetConnectionError, match="at here:1 refused the connection.*PSSECRET"):
        PyroLink(bad)
    assert pyro.daemon.handshakes == 1 and pyro.space.seen == []


def test_a_pyro_link_to_nobody_names_where_it_tried(pyro: Pyro) -> None:
    pyro.stop()
    with pytest.raises(PastSetConnectionError, match="^cannot reach the PastSet server at here:1: "):
        PyroLink(spec(pyro.uri))


def test_a_pyro_link_whose_connection_broke_raises_connection_error(pyro: Pyro) -> None:
    link = PyroLink(spec(pyro.uri))
    try:
        assert link.call(("ping",))[0] == 0
        link._proxy._pyroConnection.sock.shutdown(socket.SHUT_RDWR)  # the connection breaks under the link
        with pytest.raises(ConnectionError):
            link.call(("ping",))
    finally:
        link.close()


def test_with_a_channel_the_link_uses_it_as_this_task(pyro: Pyro, channel: tuple[ChannelServer, Recorder]) -> None:
    server, service = channel
    link = open_link(spec(pyro.uri, channel=("127.0.0.1", server.port)))
    try:
        assert isinstance(link, ChannelLink)
        assert link.call(("move", 1, (b"x" * 10,), None)) == (0, ["channel", "move", 1, (b"x" * 10,), None])
        assert service.seen == [(("move", 1, (b"x" * 10,), None), "t-1")]
        assert pyro.space.seen == []
    finally:
        link.close()


def test_a_channel_link_refuses_an_unsendable_value_before_sending_anything(
    pyro: Pyro, channel: tuple[ChannelServer, Recorder]
) -> None:
    server, service = channel
    link = ChannelLink(spec(pyro.uri, channel=("127.0.0.1", server.port)))
    try:
        with pytest.raises(SerialisationError):
            link.call(("move", 1, (object(),), None))
        assert link.call(("ping",)) == (0, ["channel", "ping"]), "the connection is still in step"
        assert service.seen == [(("ping",), "t-1")]
    finally:
        link.close()


def test_a_store_link_sends_element_operations_to_redis_and_the_rest_to_the_server(
    pyro: Pyro, channel: tuple[ChannelServer, Recorder], redis_single: Any
) -> None:
    server, service = channel
    address = parse_store(redis_single.url)
    assert address is not None
    run = f"link-{uuid.uuid4().hex[:8]}"
    store = RedisStore(address, run)
    link = open_link(spec(pyro.uri, channel=("127.0.0.1", server.port), store=store))
    client = redis_single.client()
    try:
        assert isinstance(link, StoreLink)
        assert {"enter", "move", "observe"} <= OPS and "ping" not in OPS
        reply = link.call(("enter", ("in redis", int), None, False))
        assert reply[0] == 0
        eid = reply[1][0]
        assert link.call(("move", eid, ("in redis", 5), None)) == (0, None)
        assert link.call(("observe", eid, -1, None)) == (0, ("in redis", 5))
        assert service.seen == [] and pyro.space.seen == [], "no element operation reached the server"
        assert any(client.scan_iter(match=store.keys.patterns()[0])), "the element lives in Redis"
        assert link.call(("ping",)) == (0, ["channel", "ping"])
        assert service.seen == [(("ping",), "t-1")]
    finally:
        link.close()
        for pattern in store.keys.patterns():
            for key in client.scan_iter(match=pattern):
                client.delete(key)
        client.close()
