"""SpaceService.start/finish/timed_out (pastset.server.service) on a real core Space, in this process.

The channel's loop is stood in for by a small hooks object that records which
waiters completed and says whether the connection is alive, so each outcome
of a request (a reply now, a waiter queued on the element, work for the pool)
and what finishing it does to the space can be seen directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from pastset import wire
from pastset.core.space import Space
from pastset.core.waiter import Waiter
from pastset.core.waits import Caller
from pastset.server.service import SpaceService
from pastset.transport.channel_server import LARGE
from pastset.transport.serving import Pending, Reply


class Hooks:
    def __init__(self) -> None:
        self.completed: list[Waiter] = []
        self.connected = True

    def notify(self, waiter: Waiter) -> None:
        self.completed.append(waiter)

    def alive(self) -> bool:
        return self.connected


class Setup:
    def __init__(self) -> None:
        self.space = Space("svc")
        self.service = SpaceService(self.space)
        self.caller = Caller(task="t-1")
        self.hooks = Hooks()
        self.eid = self.space.enter(("svc", int))

    def start(self, *message: Any) -> Any:
        body, *buffers = wire.encode_parts(message)
        return self.service.start(self.caller, body, buffers, self.hooks)

    def call(self, *message: Any) -> tuple:
        reply: tuple = wire.decode(self.service.call(wire.encode(message)))
        return reply


@pytest.fixture
def svc() -> Setup:
    return Setup()


def decoded(outcome: Any) -> tuple:
    assert isinstance(outcome, Reply), outcome
    reply: tuple = wire.decode_parts(outcome.parts[0], list(outcome.parts[1:]))
    return reply


def test_a_move_with_room_is_answered_now_and_counted(svc: Setup) -> None:
    assert decoded(svc.start("move", svc.eid, ("svc", 1))) == (0, None)
    assert svc.space.moves == 1
    assert svc.call("observe", svc.eid, 0) == (0, ("svc", 1))


def test_an_observe_on_an_empty_element_queues_a_waiter_that_a_move_completes(svc: Setup) -> None:
    pending = svc.start("observe", svc.eid)
    assert isinstance(pending, Pending) and pending.until is None
    assert pending.waiter.caller is svc.caller and svc.hooks.completed == []
    assert svc.call("move", svc.eid, ("svc", 9)) == (0, None)
    assert svc.hooks.completed == [pending.waiter]
    reply = svc.service.finish(pending, svc.caller)
    assert decoded(reply) == (0, ("svc", 9))
    assert isinstance(reply, Reply) and reply.taken is not None
    element, indices, values = reply.taken
    assert element is svc.space.element(svc.eid) and indices == [0] and values == [("svc", 9)]
    assert svc.space.observes == 1


def test_an_observe_for_a_connection_that_is_gone_takes_nothing(svc: Setup) -> None:
    pending = svc.start("observe", svc.eid)
    assert isinstance(pending, Pending)
    svc.hooks.connected = False
    svc.call("move", svc.eid, ("svc", 3))
    assert pending.waiter.cancelled and pending.waiter.result is None
    assert svc.call("observe", svc.eid, -1, 0) == (0, ("svc", 3)), "the tuple went to a live caller"


def test_timeout_zero_gives_the_timed_out_reply_at_once(svc: Setup) -> None:
    reply = decoded(svc.start("observe", svc.eid, -1, 0))
    assert reply[:2] == (1, "PastSetTimeoutError") and "('svc', <class 'int'>)" in reply[2]
    assert svc.space.element(svc.eid).queued() == 0, "nothing left queued"


def test_a_bounded_waiter_gives_up_when_the_loop_says_so(svc: Setup) -> None:
    before = time.monotonic()
    pending = svc.start("observe", svc.eid, -1, 5.0)
    assert isinstance(pending, Pending) and pending.until is not None
    assert before + 5.0 <= pending.until <= time.monotonic() + 5.0
    assert decoded(svc.service.timed_out(pending))[:2] == (1, "PastSetTimeoutError")


def test_a_full_element_queues_a_move_until_an_observe_makes_room(svc: Setup) -> None:
    svc.call("delta", svc.eid, 1)
    assert decoded(svc.start("move", svc.eid, ("svc", 1))) == (0, None)
    pending = svc.start("move", svc.eid, ("svc", 2))
    assert isinstance(pending, Pending) and pending.waiter.op == "move"
    assert svc.call("observe", svc.eid, -1) == (0, ("svc", 1))
    assert svc.hooks.completed == [pending.waiter]
    assert decoded(svc.service.finish(pending, svc.caller)) == (0, None)
    assert svc.space.moves == 2


def test_observe_many_and_move_many(svc: Setup) -> None:
    assert decoded(svc.start("move_many", svc.eid, [])) == (0, None), "nothing to move: answered at once"
    assert decoded(svc.start("move_many", svc.eid, [("svc", 1), ("svc", 2)])) == (0, None)
    reply = svc.start("observe_many", svc.eid, 5)
    assert decoded(reply) == (0, [("svc", 1), ("svc", 2)])
    assert svc.space.moves == 2 and svc.space.observes == 2


def test_a_leased_observe_is_held_by_the_caller_not_handed_over(svc: Setup) -> None:
    eid = svc.space.enter(("leased", int), None, True)
    svc.call("move", eid, ("leased", 4))
    reply = svc.start("observe", eid)  # a tuple is there: it completes at once
    assert decoded(reply) == (0, ("leased", 4))
    assert isinstance(reply, Reply) and reply.taken is None, "nothing to give back: the lease covers it"
    assert [(e, value) for _, e, _, value in svc.caller.leases] == [(eid, ("leased", 4))]


def test_a_large_result_is_encoded_on_the_pool(svc: Setup) -> None:
    eid = svc.space.enter(("big", bytes))
    pending = svc.start("observe", eid)
    assert isinstance(pending, Pending)
    svc.call("move", eid, ("big", b"x" * (LARGE + 1)))
    work = svc.service.finish(pending, svc.caller)
    assert callable(work) and not isinstance(work, Reply)
    reply = work()
    assert decoded(reply) == (0, ("big", b"x" * (LARGE + 1)))
    assert reply.taken is not None


@pytest.mark.parametrize(
    "message",
    [("delelement", ("svc", int)), ("enter", ("x", int), "some_xfunction")],
    ids=["delelement", "enter-xfunction"],
)
def test_work_that_may_take_a_lock_or_load_code_goes_to_the_pool(svc: Setup, message: tuple) -> None:
    work = svc.start(*message)
    assert callable(work) and not isinstance(work, (Reply, Pending))
    assert isinstance(work(), Reply)


def test_delelement_from_the_pool_ends_the_element(svc: Setup) -> None:
    work: Callable[[], Reply] = svc.start("delelement", ("svc", int))
    assert decoded(work()) == (0, None)
    assert svc.call("first", svc.eid)[:2] == (1, "ElementDeletedError")


@pytest.mark.parametrize(
    ("message", "kind", "text"),
    [
        (("nosuchop",), "SerialisationError", "unknown request"),
        (("observe", 999), "PastSetValueError", "no element with id 999"),
        (("move", 1), "RemoteError", "malformed request: move needs the tuple to move"),
        (("observe", 1, -1, None, "extra"), "RemoteError", "malformed request: observe takes at most 2"),
        (("observe_many", 1, 0), "PastSetValueError", "observe_many needs a count of at least 1, got 0"),
        (("move_many", 1, "abc"), "PastSetTypeError", "move_many takes a list of tuples, got str"),
        (("spawn", "app", []), "ConfigurationError", "has no scheduler, so spawn/halt are not available"),
    ],
)
def test_errors_are_answered_at_once_naming_the_problem(svc: Setup, message: tuple, kind: str, text: str) -> None:
    reply = decoded(svc.start(*message))
    assert reply[:2] == (1, kind) and text in reply[2], reply
    assert svc.space.element(svc.eid).queued() == 0


def test_an_observe_that_completes_at_once_hands_over_what_it_took(svc: Setup) -> None:
    svc.call("move", svc.eid, ("svc", 1))
    svc.call("move", svc.eid, ("svc", 2))
    reply = svc.start("observe", svc.eid, -1, None)
    assert decoded(reply) == (0, ("svc", 1)) and svc.space.observes == 1
    assert svc.hooks.completed == [] and svc.space.element(svc.eid).queued() == 0, "no waiter was queued"
    assert isinstance(reply, Reply) and reply.taken is not None
    element, indices, values = reply.taken
    assert element is svc.space.element(svc.eid) and indices == [0] and values == [("svc", 1)]
    element.give_back(indices, values)  # what the loop does when this reply never arrives
    assert svc.call("first", svc.eid) == (0, 0), "first is restored"
    assert decoded(svc.start("observe", svc.eid)) == (0, ("svc", 1)), "and the tuple goes out again, in order"
    assert decoded(svc.start("observe", svc.eid)) == (0, ("svc", 2))


def test_a_large_tuple_observed_at_once_is_encoded_on_the_pool(svc: Setup) -> None:
    eid = svc.space.enter(("big", bytes))
    svc.call("move", eid, ("big", b"y" * (LARGE + 1)))
    work = svc.start("observe", eid)
    assert callable(work) and not isinstance(work, (Reply, Pending))
    reply = work()
    assert decoded(reply) == (0, ("big", b"y" * (LARGE + 1))) and reply.taken is not None


def test_an_immediate_operation_still_checks_its_timeout(svc: Setup) -> None:
    svc.call("move", svc.eid, ("svc", 1))
    for message in (("observe", svc.eid, -1, "soon"), ("move", svc.eid, ("svc", 2), "soon")):
        reply = decoded(svc.start(*message))
        assert reply[:2] == (1, "PastSetTypeError") and "timeout" in reply[2], reply
    assert svc.call("last", svc.eid) == (0, 1) and svc.call("first", svc.eid) == (0, 0), "nothing happened"


def test_an_immediate_operation_on_a_deleted_element_raises_as_ever(svc: Setup) -> None:
    svc.call("move", svc.eid, ("svc", 1))
    svc.space.delelement(svc.eid)
    for message in (("observe", svc.eid), ("move", svc.eid, ("svc", 2))):
        assert decoded(svc.start(*message))[:2] == (1, "ElementDeletedError")
