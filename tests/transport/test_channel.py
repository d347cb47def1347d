"""The direct channel (pastset.transport.channel and channel_server) beside Pyro5: used by default, guarded, in order.

Each test talks to a real server process started by ``pypsscheduler --ready``.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np
import pytest
from conftest import start_server, stop_server

import pastset
from pastset.errors import PastSetConnectionError
from pastset.transport.channel import WELCOME, Channel, Hello, encode_hello
from pastset.wire import decode, encode


def _connections_to(port: int) -> int:
    """Established TCP connections from this process to ``port`` on loopback."""
    count = 0
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port and fields[3] == "01":
            count += 1
    return count


def test_operations_take_the_channel_one_connection_per_thread(server):
    pset = pastset.PastSet()
    assert pset._channel is not None
    port = pset._channel[1]
    before = _connections_to(port)
    e = pset.enter(("chan", int))
    e.move((1,))
    assert e.observe() == (1,)
    assert _connections_to(port) == before + 1
    results = []

    def other() -> None:
        e.move((2,))
        results.append(e.observe())

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert results == [(2,)]
    assert _connections_to(port) == before + 2
    pset.close()
    deadline = time.monotonic() + 5
    while _connections_to(port) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _connections_to(port) == before


def test_the_channel_needs_the_run_s_secret(tmp_path):
    srv = start_server(tmp_path, secret="chan-secret")
    try:
        pset = pastset.PastSet(run=srv.run, ns=srv.address, secret="chan-secret")
        assert pset._channel is not None
        host, port = pset._channel
        for wrong in ("", "wrong", "chan-secre"):
            with pytest.raises(PastSetConnectionError, match="needs its secret"):
                Channel(host, port, srv.run, wrong, "", 6.0)
        with pytest.raises(PastSetConnectionError, match="no PastSet named 'nope'"):
            Channel(host, port, "nope", "chan-secret", "", 6.0)
        # a raw request without any handshake is never served
        with socket.create_connection((host, port), timeout=5) as sock:
            request = encode(("ping",))
            sock.sendall(struct.pack("!IH", len(request), 0) + request)
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed without an answer
        good = Channel(host, port, srv.run, "chan-secret", "", 6.0)
        assert decode(good.call(encode(("ping",)))) == (0, srv.run)
        good.close()
    finally:
        stop_server(srv)


def test_an_oversized_frame_header_is_refused_without_allocating_it(server):
    pset = pastset.PastSet()
    host, port = pset._channel
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(struct.pack("!IH", 2**31 - 1, 0))  # claims 2 GiB for the handshake
        sock.settimeout(5)
        assert sock.recv(100) == b""
    e = pset.enter(("still", int))
    e.move((7,))
    assert e.observe() == (7,)


def _raw_channel(pset: pastset.PastSet) -> socket.socket:
    """A plain socket past the channel's handshake, to send frames by hand."""
    host, port = pset._channel
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(encode_hello(Hello(pset._secret, pset._run, "", "raw-host", "raw-test", 1)))
    head = sock.recv(WELCOME.size, socket.MSG_WAITALL)
    _, status, _, length = WELCOME.unpack(head)
    assert (status, sock.recv(length, socket.MSG_WAITALL)) == (0, b"pastset")
    return sock


def _read_frame(sock: socket.socket) -> object:
    head = sock.recv(6, socket.MSG_WAITALL)
    size, count = struct.unpack("!IH", head)
    assert count == 0
    return decode(sock.recv(size, socket.MSG_WAITALL)) if size else b""


def test_requests_sent_back_to_back_are_answered_in_order_even_when_one_waits(server):
    pset = pastset.PastSet()
    empty = pset.enter(("later", int))
    other = pset.enter(("now", int))
    sock = _raw_channel(pset)
    frames = [
        encode(("move", other._eid, (1,), None)),
        encode(("observe", empty._eid, -1, None)),  # waits until the move below, from another client
        encode(("observe", other._eid, -1, None)),
        encode(("ping",)),
    ]
    sock.sendall(b"".join(struct.pack("!IH", len(f), 0) + f for f in frames))
    assert _read_frame(sock) == (0, None)
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(1)  # nothing after the waiting observe may overtake it
    sock.settimeout(10)
    # meanwhile the server serves everyone else
    other.move((5,))
    empty.move((7,))
    assert _read_frame(sock) == (0, (7,))
    assert _read_frame(sock) == (0, (1,))
    assert _read_frame(sock) == (0, pset._run)
    assert other.observe() == (5,)
    sock.close()


def test_a_client_that_does_not_read_a_large_reply_holds_up_no_one(server):
    pset = pastset.PastSet()
    arrays = pset.enter(("arrays", np.ndarray))
    arrays.move((np.ones(4 * 1024 * 1024),))  # 32 MiB: more than the socket buffers hold
    sock = _raw_channel(pset)
    for _ in range(3):  # three replies of 32 MiB that nobody reads
        request = encode(("observe", arrays._eid, 0, None))
        sock.sendall(struct.pack("!IH", len(request), 0) + request)
    others = pset.enter(("others", int))
    start = time.monotonic()
    for i in range(100):
        others.move((i,))
        assert others.observe() == (i,)
    assert time.monotonic() - start < 5
    sock.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("setting", ["off", "fixed"])
def test_pschannel_fixes_the_port_or_turns_the_channel_off(tmp_path, monkeypatch, setting):
    port = _free_port()
    monkeypatch.setenv("PSCHANNEL", str(port) if setting == "fixed" else "off")
    srv = start_server(tmp_path)
    try:
        pset = pastset.PastSet(run=srv.run, ns=srv.address)
        if setting == "off":
            assert pset._channel is None  # every operation goes through Pyro5
        else:
            assert pset._channel == ("127.0.0.1", port)
        e = pset.enter(("either way", int))
        e.move((3,))
        assert e.observe() == (3,)
    finally:
        stop_server(srv)


@pytest.mark.parametrize("epoll", [True, False], ids=["epoll", "selectors"])
def test_the_loop_s_poller_reports_ready_sockets_with_their_data(epoll):
    from pastset.transport.channel_server import _Poller

    poller = _Poller(epoll=epoll)
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        poller.register(a, "a")
        poller.register(c, "c")
        assert poller.poll(0) == []
        b.sendall(b"x")
        assert poller.poll(1) == ["a"]
        d.sendall(b"y")
        assert sorted(poller.poll(1)) == ["a", "c"]
        poller.unregister(a)
        poller.unregister(a)  # twice is harmless
        assert poller.poll(1) == ["c"]
    finally:
        poller.close()
        for sock in (a, b, c, d):
            sock.close()
