"""A channel connection as the loop keeps it: frame sizes, and large frames received into memory of their own.

The loop runs in this process (a :class:`ChannelServer` with a small service
that reports what it was handed), so what the loop did with a frame's bytes
can be seen, not guessed from timings.
"""

from __future__ import annotations

import mmap
import time
from typing import Any

import pytest

from pastset import wire
from pastset.core.waits import Caller
from pastset.transport.channel import HEADER, LENGTH, Channel
from pastset.transport.channel_links import frame_size
from pastset.transport.channel_server import LARGE, ChannelServer
from pastset.transport.serving import Reply

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """A service that answers every request with the sizes it got, and keeps what its buffers were."""

    def __init__(self) -> None:
        self.seen: list[tuple[type, list[Any]]] = []

    def start(self, caller: Caller, body: bytes, buffers: list, hooks: Any) -> Reply:
        self.seen.append((type(body), [b.obj if isinstance(b, memoryview) else b for b in buffers]))
        return Reply(wire.encode_parts((0, [len(body), *[len(b) for b in buffers]])))

    def finish(self, pending: Any, caller: Caller) -> Reply:  # pragma: no cover - nothing waits here
        raise AssertionError("nothing waits")

    def timed_out(self, pending: Any) -> Reply:  # pragma: no cover
        raise AssertionError("nothing waits")


@pytest.fixture
def loop():
    service = Recorder()
    server = ChannelServer("127.0.0.1", 0, "s3cret", lambda run: service if run == "r" else None, lambda c: None)
    try:
        yield server, service
    finally:
        server.close()


def test_frame_size_counts_header_lengths_body_and_buffers_once_the_header_is_there():
    head = HEADER.pack(10, 2) + LENGTH.pack(100) + LENGTH.pack(1000)
    assert frame_size(bytearray(head[:5])) is None
    assert frame_size(bytearray(head[: HEADER.size + LENGTH.size])) is None, "the length table is not all there"
    assert frame_size(bytearray(head)) == len(head) + 10 + 100 + 1000
    assert frame_size(bytearray(HEADER.pack(7, 0))) == HEADER.size + 7


def test_a_large_frame_goes_into_a_mapping_of_its_own_and_small_ones_stay_in_the_inbox(loop):
    server, service = loop
    channel = Channel("127.0.0.1", server.port, "r", "s3cret", "t1", 6.0)
    try:
        small = wire.encode_parts(("x", b"s" * (wire.OUT_OF_BAND + 1)))
        assert wire.decode(channel.exchange(small)[0]) == (0, [len(small[0]), wire.OUT_OF_BAND + 1])
        assert service.seen[-1][1][0].__class__ is bytearray, "a small frame's buffer is cut from the inbox"
        big = wire.encode_parts(("x", b"b" * (3 * LARGE)))
        reply = wire.decode(channel.exchange(big)[0])
        assert reply == (0, [len(big[0]), 3 * LARGE])
        body_type, owners = service.seen[-1]
        assert body_type is bytes and type(owners[0]) is mmap.mmap, "received straight into its own mapping"
        assert server._inflight == 0, "the bytes reserved for the large frame were all released"
    finally:
        channel.close()


def test_a_connection_that_ends_inside_a_large_frame_releases_what_it_reserved(loop):
    server, service = loop
    channel = Channel("127.0.0.1", server.port, "r", "s3cret", "t1", 6.0)
    sock = channel._sock
    total = 4 * LARGE
    sock.sendall(HEADER.pack(10, 1) + LENGTH.pack(total) + b"0123456789" + b"\0" * LARGE)
    deadline = time.monotonic() + 10
    while server._inflight < total and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server._inflight >= total, "the whole frame is reserved as soon as its header is read"
    channel.close()
    while server._inflight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server._inflight == 0 and not service.seen
    other = Channel("127.0.0.1", server.port, "r", "s3cret", "t2", 6.0)
    try:
        assert wire.decode(other.exchange([wire.encode(("ping",))])[0]) == (0, [len(wire.encode(("ping",)))])
    finally:
        other.close()
