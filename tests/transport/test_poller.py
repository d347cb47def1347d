"""Readiness reporting of pastset.transport.poller, with epoll and with the selectors fallback.

Registering, polling and unregistering readable sockets is covered in
tests/transport/test_channel.py; here: which events are reported, switching
them with ``modify``, and sockets the poller does not know.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pastset.transport.poller import IN, OUT, Poller


@pytest.fixture(params=[True, False], ids=["epoll", "selectors"])
def poller(request: pytest.FixtureRequest) -> Iterator[Poller]:
    made = Poller(epoll=request.param)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_in_and_out_are_distinct_bits() -> None:
    assert IN and OUT and not IN & OUT


def test_a_writable_socket_is_reported_with_out_only_when_asked_for(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, _ = pair
    poller.register(a, "a")  # IN by default: a quiet socket is not reported although writable
    assert poller.poll_events(0) == []
    poller.modify(a, OUT)
    assert poller.poll_events(1) == [("a", OUT)]


def test_events_report_in_out_or_both_as_they_hold(poller: Poller, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    poller.register(a, {"name": "a"}, IN | OUT)
    [(data, events)] = poller.poll_events(1)
    assert data == {"name": "a"} and events & OUT and not events & IN
    b.sendall(b"x")
    [(_, events)] = poller.poll_events(1)
    assert events & IN and events & OUT
    poller.modify(a, IN)
    [(_, events)] = poller.poll_events(1)
    assert events & IN and not events & OUT
    assert poller.poll(1) == [{"name": "a"}]


def test_a_peer_that_hung_up_is_reported_readable(poller: Poller, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    poller.register(a, "a")
    b.close()
    [(data, events)] = poller.poll_events(1)
    assert data == "a" and events & IN
    assert a.recv(1) == b""  # what the loop reads then: the end of the connection


def test_modify_and_unregister_of_an_unknown_socket_do_nothing(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    poller.modify(b, OUT)
    poller.unregister(b)
    assert poller.poll_events(0) == [], "a socket never registered is never reported"
    poller.register(a, "a", OUT)
    poller.unregister(a)
    poller.modify(a, OUT)  # after unregister: still not reported
    assert poller.poll_events(0) == []


def test_a_socket_can_be_registered_again_after_unregister_with_new_data(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, _ = pair
    poller.register(a, "old", OUT)
    poller.unregister(a)
    poller.register(a, "new", OUT)
    assert poller.poll(1) == ["new"]
