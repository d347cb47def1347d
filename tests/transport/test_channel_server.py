"""The channel's event loop (pastset.transport.channel_server) with a scripted service, in this process.

The service answers at once, queues a waiter, or hands work to the pool as
each request asks, so that what the loop does with each kind of outcome (and
with a handshake, a hang-up, a deadline) is seen directly.  Frames and large
buffers are in tests/transport/test_channel_links.py.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pastset import wire
from pastset.core.waiter import Waiter
from pastset.core.waits import Caller
from pastset.errors import PastSetConnectionError
from pastset.transport.channel import Channel
from pastset.transport.channel_server import ChannelServer
from pastset.transport.serving import Hooks, Outcome, Pending, Reply

pytestmark = pytest.mark.timeout(60)

SECRET = "loop-secret"
RUN = "loop-run"


class Element:
    """What a Pending waits on: records cancels."""

    def __init__(self) -> None:
        self.cancelled: list[Waiter] = []

    def cancel(self, waiter: Waiter) -> bool:
        self.cancelled.append(waiter)
        return True


class Scripted:
    """A service that does what each request ``(what, arg)`` says."""

    def __init__(self) -> None:
        self.callers: list[Caller] = []
        self.queued: list[tuple[Pending, Hooks]] = []
        self.element = Element()

    def start(self, caller: Caller, body: bytes, buffers: list, hooks: Hooks) -> Outcome:
        self.callers.append(caller)
        what, arg = wire.decode_parts(body, buffers)
        if what == "now":
            return Reply(wire.encode_parts((0, arg)))
        if what == "pool":
            return lambda: Reply(wire.encode_parts((0, threading.current_thread().name)))
        pending = Pending(self.element, Waiter("observe", timeout=arg))
        self.queued.append((pending, hooks))
        return pending

    def finish(self, pending: Pending, caller: Caller) -> Outcome:
        return Reply(wire.encode_parts((0, ("finished", pending.waiter.result))))

    def timed_out(self, pending: Pending) -> Reply:
        return Reply(wire.encode_parts((1, "PastSetTimeoutError", "gave up", None)))


class Loop:
    def __init__(self) -> None:
        self.service = Scripted()
        self.closed: list[Caller] = []
        self.server = ChannelServer(
            "127.0.0.1", 0, SECRET, lambda run: self.service if run == RUN else None, self.closed.append
        )

    def channel(self, task: str = "t-1", run: str = RUN, secret: str = SECRET) -> Channel:
        return Channel("127.0.0.1", self.server.port, run, secret, task, 6.0)


@pytest.fixture
def loop() -> Iterator[Loop]:
    made = Loop()
    try:
        yield made
    finally:
        made.server.close()


def ask(channel: Channel, what: str, arg: Any = None) -> tuple:
    reply: tuple = wire.decode_parts(*channel.exchange(wire.encode_parts((what, arg))))
    return reply


def until(check: Callable[[], Any], within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def in_thread(call: Callable[[], tuple]) -> tuple[threading.Thread, list[tuple]]:
    got: list[tuple] = []
    thread = threading.Thread(target=lambda: got.append(call()))
    thread.start()
    return thread, got


def test_the_caller_is_who_the_handshake_said(loop: Loop) -> None:
    channel = loop.channel(task="task-42")
    try:
        assert ask(channel, "now", [1, "x"]) == (0, [1, "x"])
        caller = loop.service.callers[-1]
        assert (caller.task, caller.host, caller.pid) == ("task-42", socket.gethostname(), os.getpid())
        assert ask(channel, "now", 2) == (0, 2)
        assert loop.service.callers[-1] is caller, "one caller per connection"
    finally:
        channel.close()


def test_a_run_the_server_does_not_have_is_refused_by_name(loop: Loop) -> None:
    with pytest.raises(PastSetConnectionError, match="refused the channel: no PastSet named 'other' on this server"):
        loop.channel(run="other")
    with pytest.raises(PastSetConnectionError, match="refused the channel: this PastSet run needs its secret"):
        loop.channel(secret="wrong")
    assert loop.service.callers == [] and loop.closed == []


def test_work_for_the_pool_runs_off_the_loop(loop: Loop) -> None:
    channel = loop.channel()
    try:
        reply = ask(channel, "pool")
        assert reply[0] == 0 and reply[1].startswith("channel-pool")
    finally:
        channel.close()


def test_a_queued_waiter_is_answered_when_it_completes_and_the_others_are_not_held_up(loop: Loop) -> None:
    waiting, other = loop.channel("a"), loop.channel("b")
    try:
        thread, got = in_thread(lambda: ask(waiting, "wait"))
        assert until(lambda: loop.server.waiting() == 1)
        assert ask(other, "now", "meanwhile") == (0, "meanwhile")
        pending, hooks = loop.service.queued[0]
        assert pending.until is None and hooks.alive()
        pending.waiter.result = 5
        pending.waiter.done = True
        threading.Thread(target=hooks.notify, args=(pending.waiter,)).start()  # from any thread
        thread.join(10)
        assert got == [(0, ("finished", 5))]
        assert loop.server.waiting() == 0
        assert loop.service.element.cancelled == []
    finally:
        waiting.close()
        other.close()


def test_a_waiter_that_reaches_its_deadline_gets_the_timed_out_reply(loop: Loop) -> None:
    channel = loop.channel()
    try:
        started = time.monotonic()
        assert ask(channel, "wait", 0.2) == (1, "PastSetTimeoutError", "gave up", None)
        assert time.monotonic() - started >= 0.2
        [(pending, _)] = loop.service.queued
        assert loop.service.element.cancelled == [pending.waiter]
        assert ask(channel, "now", "next") == (0, "next"), "the connection goes on"
    finally:
        channel.close()


def test_a_hang_up_cancels_the_queued_waiter_and_tells_the_server_who_left(loop: Loop) -> None:
    channel = loop.channel("leaver")
    thread, got = in_thread(lambda: _ask_or_error(channel))
    assert until(lambda: loop.server.waiting() == 1)
    pending, hooks = loop.service.queued[0]
    channel.close()
    thread.join(10)
    assert got and got[0][0] == "error", "the call blocked in the other thread fails"
    assert until(lambda: loop.closed)
    assert [c.task for c in loop.closed] == ["leaver"]
    assert loop.service.element.cancelled == [pending.waiter]
    assert not hooks.alive()
    assert loop.server.waiting() == 0


def _ask_or_error(channel: Channel) -> tuple:
    try:
        return ask(channel, "wait")
    except (PastSetConnectionError, OSError) as err:
        return ("error", str(err))


def test_after_close_no_new_channel_is_accepted(loop: Loop) -> None:
    port = loop.server.port
    loop.server.close()
    with pytest.raises(PastSetConnectionError):
        Channel("127.0.0.1", port, RUN, SECRET, "t", 6.0)
