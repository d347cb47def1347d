"""The guards of the Pyro5 port (pastset.transport.pyro_guard): header checks and the handshake limits.

:func:`check_header` is tested on headers Pyro5 itself builds; the limits
(size, serializer, time, number waiting) on a guarded Pyro5 daemon running in
this process on loopback, spoken to with raw sockets and a real proxy.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import Pyro5.api
import Pyro5.errors
import Pyro5.protocol
import Pyro5.serializers
import Pyro5.svr_threads
import pytest
from Pyro5 import config as pyro_config

from pastset.transport import pyro_guard
from pastset.transport.proxies import proxy
from pastset.transport.pyro_guard import HANDSHAKE_MAX, GuardedDaemon, check_header, guard

pytestmark = pytest.mark.timeout(60)

MSGPACK = Pyro5.serializers.serializers["msgpack"].serializer_id
MARSHAL = Pyro5.serializers.serializers["marshal"].serializer_id
HEADER = struct.Struct(Pyro5.protocol._header_format)
MAGIC = Pyro5.protocol._magic_number


def message(kind: int, serializer: int = MSGPACK, flags: int = 0, body: bytes = b"x") -> bytes:
    """A whole Pyro5 message, its header laid out as Pyro5's protocol does (any flags kept as given)."""
    head = HEADER.pack(
        b"PYRO", Pyro5.protocol.PROTOCOL_VERSION, kind, serializer, flags, 1, len(body), 0, b"\0" * 16, 0, MAGIC
    )
    return head + body


def header(kind: int, serializer: int = MSGPACK, flags: int = 0, body: bytes = b"x") -> bytes:
    return message(kind, serializer, flags, body)[: HEADER.size]


# ---------------------------------------------------------------- check_header
def test_a_small_msgpack_handshake_passes_and_its_body_size_is_returned() -> None:
    sent = Pyro5.protocol.SendingMessage(Pyro5.protocol.MSG_CONNECT, 0, 1, MSGPACK, b"x").data
    assert message(Pyro5.protocol.MSG_CONNECT) == bytes(sent), "the messages here are laid out as Pyro5's"
    body = b"h" * 100
    assert check_header(header(Pyro5.protocol.MSG_CONNECT, body=body), first=True) == len(body)


def test_the_first_message_must_be_the_handshake() -> None:
    with pytest.raises(Pyro5.errors.ProtocolError, match="first message must be the connection handshake"):
        check_header(header(Pyro5.protocol.MSG_INVOKE), first=True)
    assert check_header(header(Pyro5.protocol.MSG_INVOKE, body=b"abc"), first=False) == 3


def test_a_handshake_larger_than_the_limit_is_refused_but_a_later_message_is_not() -> None:
    body = b"h" * (HANDSHAKE_MAX - HEADER.size + 1)
    with pytest.raises(Pyro5.errors.ProtocolError, match=f"at most {HANDSHAKE_MAX} bytes"):
        check_header(header(Pyro5.protocol.MSG_CONNECT, body=body), first=True)
    just = b"h" * (HANDSHAKE_MAX - HEADER.size)
    assert check_header(header(Pyro5.protocol.MSG_CONNECT, body=just), first=True) == len(just)
    assert check_header(header(Pyro5.protocol.MSG_INVOKE, body=body), first=False) == len(body)


def test_only_msgpack_is_spoken_and_the_error_says_how_to_set_it() -> None:
    for first, kind in ((True, Pyro5.protocol.MSG_CONNECT), (False, Pyro5.protocol.MSG_INVOKE)):
        with pytest.raises(Pyro5.errors.ProtocolError, match="msgpack.*PYRO_SERIALIZER"):
            check_header(header(kind, serializer=MARSHAL), first=first)
    assert check_header(header(Pyro5.protocol.MSG_PING, serializer=MARSHAL), first=False) == 1, "a ping has no body"


@pytest.mark.parametrize("flag", [Pyro5.protocol.FLAGS_COMPRESSED, Pyro5.protocol.FLAGS_KEEPSERIALIZED])
def test_compressed_or_pre_serialized_messages_are_refused(flag: int) -> None:
    for first, kind in ((True, Pyro5.protocol.MSG_CONNECT), (False, Pyro5.protocol.MSG_INVOKE)):
        with pytest.raises(Pyro5.errors.ProtocolError, match="no compressed or pre-serialized"):
            check_header(header(kind, flags=flag), first=first)


def test_a_header_that_is_not_pyro5_is_refused() -> None:
    with pytest.raises(Pyro5.errors.ProtocolError):
        check_header(b"GET / HTTP/1.1\r\n" + b"\0" * (HEADER.size - 16), first=True)


def test_guard_refuses_a_server_that_is_not_the_thread_pool_one() -> None:
    with pytest.raises(TypeError, match="cannot guard a Pyro5 transport server of type object"):
        guard(object())


# ------------------------------------------------------------ a guarded daemon
SECRET = "guard-secret"


class Echo:
    @Pyro5.api.expose
    def echo(self, value: Any) -> Any:
        return value


class Daemon(GuardedDaemon, Pyro5.api.Daemon):
    def validateHandshake(self, conn: Any, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("secret") != SECRET:
            raise Pyro5.errors.SecurityError("this PastSet run needs its secret")
        return "ok"


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, str]]:
    monkeypatch.setattr(pyro_config, "POLLTIMEOUT", 0.05)  # how often the accept loop looks at deadlines
    made = Daemon(host="127.0.0.1", port=0)
    uri = str(made.register(Echo(), "echo"))
    thread = threading.Thread(target=made.requestLoop, daemon=True)
    thread.start()
    try:
        yield made, uri
    finally:
        made.shutdown()
        thread.join(10)
        made.close()
        assert not thread.is_alive()


def connect(made: Daemon) -> socket.socket:
    host, port = made.locationStr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def until_closed(sock: socket.socket, within: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    sock.settimeout(within)
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_the_guarded_daemon_serves_a_proper_proxy(daemon: tuple[Daemon, str]) -> None:
    made, uri = daemon
    assert isinstance(made.transportServer, pyro_guard._GuardedThreadpool)
    with proxy(uri, SECRET, timeout=5) as echo:
        assert echo.echo([1, "two"]) == [1, "two"]


def test_a_wrong_serializer_in_the_handshake_is_refused_with_the_reason(daemon: tuple[Daemon, str]) -> None:
    made, _ = daemon
    with connect(made) as sock:
        sock.sendall(message(Pyro5.protocol.MSG_CONNECT, serializer=MARSHAL))
        reply = until_closed(sock)
    assert HEADER.unpack(reply[: HEADER.size])[2] == Pyro5.protocol.MSG_CONNECTFAIL
    assert b"msgpack" in reply[HEADER.size :]


def test_an_oversized_handshake_is_refused_before_its_body_is_read(daemon: tuple[Daemon, str]) -> None:
    made, _ = daemon
    big = message(Pyro5.protocol.MSG_CONNECT, body=b"b" * (4 * HANDSHAKE_MAX))
    with connect(made) as sock:
        sock.sendall(big[: HEADER.size])  # the header alone is enough to refuse it
        reply = until_closed(sock)
    assert HEADER.unpack(reply[: HEADER.size])[2] == Pyro5.protocol.MSG_CONNECTFAIL
    assert f"at most {HANDSHAKE_MAX} bytes".encode() in reply


def test_an_idle_connection_is_closed_after_the_handshake_timeout(
    daemon: tuple[Daemon, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made, uri = daemon
    monkeypatch.setattr(pyro_guard, "HANDSHAKE_TIMEOUT", 0.3)
    started = time.monotonic()
    with connect(made) as sock:
        assert until_closed(sock, within=5.0) == b""
    assert 0.3 <= time.monotonic() - started < 5.0
    with proxy(uri, SECRET, timeout=5) as echo:  # the server still serves
        assert echo.echo(1) == 1


def test_beyond_max_pending_the_oldest_waiting_connection_is_closed(
    daemon: tuple[Daemon, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made, uri = daemon
    monkeypatch.setattr(pyro_guard, "MAX_PENDING", 2)
    oldest = connect(made)
    try:
        second = connect(made)
        deadline = time.monotonic() + 5
        while len(made.transportServer._pending) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the server's state, bounded
        assert len(made.transportServer._pending) == 2
        third = connect(made)
        assert until_closed(oldest) == b"", "the oldest waiting connection is closed"
        second.settimeout(0.2)
        with pytest.raises(TimeoutError):
            second.recv(1)  # still waiting for its handshake, not closed
        third.close()
        second.close()
    finally:
        oldest.close()
    with proxy(uri, SECRET, timeout=5) as echo:
        assert echo.echo("still") == "still"


def test_a_later_compressed_message_ends_the_connection(daemon: tuple[Daemon, str]) -> None:
    _, uri = daemon
    echo = proxy(uri, SECRET, timeout=5)
    try:
        assert echo.echo(1) == 1
        sock = echo._pyroConnection.sock
        sock.sendall(message(Pyro5.protocol.MSG_INVOKE, flags=Pyro5.protocol.FLAGS_COMPRESSED, body=b"z" * 64))
        assert b"z" * 64 not in until_closed(sock)
    finally:
        echo._pyroRelease()
