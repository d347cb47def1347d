"""What a connection can do to the server before (and just after) it authenticates.

Each test attacks a real server process started for it (with a secret the
attacker does not have), then checks three things: the process is alive, its
resident memory (and thread count) did not jump, and a legitimate client still
completes move+observe pairs.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgpack
import Pyro5.protocol
import Pyro5.serializers
import pytest
from conftest import RunningServer, start_server, stop_server

import pastset
from pastset import wire
from pastset.transport.channel import HANDSHAKE_TIMEOUT, HEADER
from pastset.transport.proxies import proxy

pytestmark = pytest.mark.timeout(180)

SECRET = "fuzz-secret-not-given-to-the-attacker"
MSGPACK_ID = Pyro5.serializers.serializers["msgpack"].serializer_id
MARSHAL_ID = Pyro5.serializers.serializers["marshal"].serializer_id


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    psbin = tmp_path / "psbin"
    psbin.mkdir()
    srv = start_server(psbin, secret=SECRET)
    for key, value in srv.env(PSSECRET=SECRET).items():
        if key.startswith("PS"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("PSTASK", raising=False)
    try:
        yield srv
    finally:
        stop_server(srv)


def status(pid: int, field: str) -> int:
    """A number from /proc/PID/status (VmRSS in KiB, Threads)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def pyro_address(srv: RunningServer) -> tuple[str, int]:
    host, _, port = srv.address.rpartition(":")
    return host, int(port)


def channel_address() -> tuple[str, int]:
    pset = pastset.PastSet()
    try:
        assert pset._channel is not None, "the server offers its direct channel"
        return pset._channel[0], int(pset._channel[1])
    finally:
        pset.close()


def legitimate_pairs(count: int = 20) -> None:
    """A client with the secret still gets every tuple it moves, on both transports."""
    with pastset.PastSet() as pset:
        element = pset.enter(("fuzz-legit", int))
        for i in range(count):
            element.move((i,))
            assert element.observe() == (i,)


def assert_unharmed(srv: RunningServer, rss_before: int, threads_before: int | None = None) -> None:
    assert srv.proc.poll() is None, "the server process died"
    legitimate_pairs()
    grown = status(srv.proc.pid, "VmRSS") - rss_before
    assert grown < 64 * 1024, f"the server's RSS grew by {grown} KiB"
    if threads_before is not None:
        threads = status(srv.proc.pid, "Threads")
        assert threads < threads_before + 20, f"the server went from {threads_before} to {threads} threads"


def pyro_message(kind: int, serializer: int, body: bytes, flags: int = 0, announced: int | None = None) -> bytes:
    header = struct.pack(
        Pyro5.protocol._header_format,
        b"PYRO",
        Pyro5.protocol.PROTOCOL_VERSION,
        kind,
        serializer,
        flags,
        0,
        len(body) if announced is None else announced,
        0,
        bytes(16),
        0,
        Pyro5.protocol._magic_number,
    )
    return header + body


def read_until_closed(sock: socket.socket, limit: float = 60.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded, so a hang fails the test)."""
    sock.settimeout(limit)
    got = b""
    with contextlib.suppress(ConnectionResetError):
        while True:
            data = sock.recv(65536)
            if not data:
                break
            got += data
    return got


def deep_tuple_bytes(levels: int) -> bytes:
    """pastset.wire bytes of a tuple nested ``levels`` deep, built without the encoder's checks."""
    data = msgpack.packb(1)
    for _ in range(levels):
        data = msgpack.packb(msgpack.ExtType(1, b"\x91" + data))
    return data


def warm(srv: RunningServer) -> tuple[int, int]:
    legitimate_pairs(5)
    return status(srv.proc.pid, "VmRSS"), status(srv.proc.pid, "Threads")


# ------------------------------------------------------------------ tests
def test_deep_nesting_before_authentication_on_both_ports(target):
    rss, threads = warm(target)
    body = deep_tuple_bytes(3000)
    with socket.create_connection(channel_address(), timeout=10) as sock:
        sock.sendall(HEADER.pack(len(body), 0) + body)
        read_until_closed(sock)
    assert target.proc.poll() is None, "a nested channel handshake crashed the server"
    nested = b"\x91" * 1000 + b"\x01"
    for serializer, payload in ((MSGPACK_ID, nested), (MARSHAL_ID, b"(\x01\x00\x00\x00" * 1900 + b"N")):
        with socket.create_connection(pyro_address(target), timeout=10) as sock:
            sock.sendall(pyro_message(Pyro5.protocol.MSG_CONNECT, serializer, payload))
            read_until_closed(sock)
    assert_unharmed(target, rss, threads)


def test_deep_nesting_after_authentication_is_refused_and_the_server_stays(target):
    rss, threads = warm(target)
    with pastset.PastSet() as pset:
        element = pset.enter(("fuzz-deep", int))
        for raw in (pset._link()._channel, proxy(pset._uri, pset._secret)):
            reply = wire.decode(raw.call(deep_tuple_bytes(3000)))
            assert reply[0] == 1 and "nests more than 100 levels" in reply[2]
        assert element.last() == 0
    assert_unharmed(target, rss, threads)


def test_compressed_handshake_is_refused_before_it_is_decompressed(target):
    rss, threads = warm(target)
    bomb = zlib.compress(b"\x00" * (400 * 1024 * 1024), 9)  # ~400 KB that inflate to 400 MiB
    with socket.create_connection(pyro_address(target), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may close before it has read it all
            sock.sendall(
                pyro_message(Pyro5.protocol.MSG_CONNECT, MSGPACK_ID, bomb, flags=Pyro5.protocol.FLAGS_COMPRESSED)
            )
        reply = read_until_closed(sock)
    assert b"compressed" in reply, reply[:200]
    assert_unharmed(target, rss, threads)


def test_hash_colliding_marshal_set_is_refused_before_its_body_is_decoded(target):
    rss, threads = warm(target)
    import marshal

    # complex(a, b) hashes to a + 1000003*b: all of these share one hash.
    colliding = {complex(-1000003 * k, k) for k in range(20000)}
    body = marshal.dumps({"handshake": colliding, "object": "x"})
    assert len(body) > 300_000
    with socket.create_connection(pyro_address(target), timeout=10) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(pyro_message(Pyro5.protocol.MSG_CONNECT, MARSHAL_ID, body))
        reply = read_until_closed(sock)
    assert b"msgpack" in reply, reply[:200]
    # the same set as a msgpack map's keys or a pastset set, after authentication
    with pastset.PastSet() as pset:
        raw = pset._link()._channel  # the raw channel: bytes in, bytes out
        for value in (colliding, {c: 1 for c in colliding}):
            reply = wire.decode(raw.call(wire.encode(("move", 0, (value,), None))))
            assert reply[0] == 1 and "share a hash" in reply[2]
    assert_unharmed(target, rss, threads)


def test_oversized_headers_are_refused_at_once_on_both_ports(target):
    rss, threads = warm(target)
    announced = 1024 * 1024 * 1024 - 100
    with socket.create_connection(pyro_address(target), timeout=10) as sock:
        sock.sendall(pyro_message(Pyro5.protocol.MSG_CONNECT, MSGPACK_ID, b"", announced=announced))
        reply = read_until_closed(sock, limit=HANDSHAKE_TIMEOUT / 2)
    assert b"handshake is at most" in reply, reply[:200]
    with socket.create_connection(channel_address(), timeout=10) as sock:
        sock.sendall(HEADER.pack(2**31 - 1, 0))
        read_until_closed(sock, limit=HANDSHAKE_TIMEOUT / 2)
    assert_unharmed(target, rss, threads)


def test_idle_connections_hold_no_thread_and_do_not_block_the_accept_loop(target):
    rss, threads = warm(target)
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(pyro_address(target), timeout=10))
            idle.append(socket.create_connection(channel_address(), timeout=10))
        legitimate_pairs()  # served while every idle connection is still open
        assert status(target.proc.pid, "Threads") < threads + 20
    finally:
        for sock in idle:
            sock.close()
    assert_unharmed(target, rss, threads)


def test_slow_and_idle_connections_are_closed_at_the_handshake_deadline(target):
    rss, threads = warm(target)
    pyro_hello = pyro_message(Pyro5.protocol.MSG_CONNECT, MSGPACK_ID, msgpack.packb({"handshake": {}, "object": "x"}))
    channel_hello = HEADER.pack(200, 0) + bytes(200)
    slow = {socket.create_connection(pyro_address(target), timeout=10): pyro_hello for _ in range(20)}
    slow.update({socket.create_connection(channel_address(), timeout=10): channel_hello for _ in range(20)})
    idle = [socket.create_connection(pyro_address(target), timeout=10) for _ in range(20)]
    started = time.monotonic()
    try:
        waiting = set(slow) | set(idle)
        sent = 0
        # one byte per connection per round, never the last: a slowloris that never completes its handshake
        while waiting and time.monotonic() - started < HANDSHAKE_TIMEOUT * 4:
            for sock in waiting & set(slow):
                if sent < len(slow[sock]) - 1:
                    with contextlib.suppress(OSError):
                        sock.send(slow[sock][sent : sent + 1])
            sent += 1
            readable, _, _ = select.select(list(waiting), [], [], 0.5)
            for sock in readable:
                with contextlib.suppress(OSError):
                    if sock.recv(4096):
                        continue
                waiting.discard(sock)
        assert not waiting, f"{len(waiting)} slow or idle connections were open after {HANDSHAKE_TIMEOUT * 4:g} s"
    finally:
        for sock in [*slow, *idle]:
            sock.close()
    assert_unharmed(target, rss, threads)


def test_many_pending_handshakes_cannot_exhaust_the_pool(target):
    rss, threads = warm(target)
    # More would-be handshakes than may wait at once; the oldest are closed, the newest and
    # every legitimate client are served.
    socks = [socket.create_connection(pyro_address(target), timeout=10) for _ in range(400)]
    try:
        legitimate_pairs()
        closed = 0
        for sock in socks[:100]:
            sock.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                if sock.recv(1) == b"":
                    closed += 1
        assert closed == 100
    finally:
        for sock in socks:
            sock.close()
    assert_unharmed(target, rss, threads)


def test_a_wrong_serializer_is_told_why(target):
    with socket.create_connection(pyro_address(target), timeout=10) as sock:
        serpent = Pyro5.serializers.serializers["serpent"]
        sock.sendall(pyro_message(Pyro5.protocol.MSG_CONNECT, serpent.serializer_id, serpent.dumps({"handshake": {}})))
        reply = read_until_closed(sock)
    assert b"only Pyro5's msgpack serializer" in reply
    assert os.path.exists(f"/proc/{target.proc.pid}")
