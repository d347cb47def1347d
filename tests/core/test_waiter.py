"""Element waiters (pastset.core.waiter): the non-blocking interface the server's event loop uses.

A waiter is queued without a thread, completed by whoever makes it ready, in
FIFO order; a tuple given back returns to its own index, also after a journal
replay; every queued waiter is in the space's registry exactly while it waits.
"""

from __future__ import annotations

import pytest

from pastset.core.element import Element, Waiter
from pastset.core.journal import Journal, read_journal
from pastset.core.space import Space
from pastset.core.waits import Caller
from pastset.errors import ElementDeletedError


def observer(done: list[Waiter], alive: bool = True, count: int = 0) -> Waiter:
    op = "observe_many" if count else "observe"
    return Waiter(op, count=count or 1, notify=done.append, alive=lambda: alive)


def test_queued_observers_complete_in_fifo_order_without_a_thread():
    e = Element(("w", int))
    done: list[Waiter] = []
    waiters = [observer(done) for _ in range(3)]
    assert [e.submit(w) for w in waiters] == [False, False, False]
    e.move((1,))
    e.move((2,))
    assert done == waiters[:2] and [w.result for w in done] == [(1,), (2,)]
    assert not waiters[2].done
    assert e.cancel(waiters[2]) and not e.cancel(waiters[2])
    e.move((3,))
    assert done == waiters[:2] and e.first() == 2  # the cancelled one took nothing


def test_a_dead_observer_is_skipped_and_the_tuple_goes_to_the_next():
    e = Element(("w", int))
    done: list[Waiter] = []
    dead, live = observer(done, alive=False), observer(done)
    e.submit(dead)
    e.submit(live)
    e.move((7,))
    assert done == [live] and live.result == (7,) and dead.cancelled and not dead.done


def test_given_back_tuples_return_to_their_index_and_go_first():
    e = Element(("w", int))
    e.move_many([(i,) for i in range(5)])
    done: list[Waiter] = []
    w = observer(done, count=2)
    assert e.submit(w) and w.result == [(0,), (1,)] and w.taken == [0, 1]
    assert e.observe() == (2,)
    e.give_back(w.taken, w.result)
    assert e.first() == 0
    assert [e.observe() for _ in range(4)] == [(0,), (1,), (3,), (4,)]
    assert e.first() == e.last() == 5


def test_delta_counts_given_back_tuples_and_axe_keeps_them():
    e = Element(("w", int))
    e.delta(2)
    e.move((0,))
    e.move((1,))
    e.observe()
    e.observe()
    e.give_back([0], [(0,)])
    e.axe(5)  # may free index 1 only: 0 is unobserved again
    assert e.observe(0) == (0,)
    done: list[Waiter] = []
    mover = Waiter("move", data=[(2,), (3,)], notify=done.append)
    assert not e.submit(mover)  # (0,) and (2,) fill delta 2; (3,) waits
    assert e.last() == 3
    assert e.observe() == (0,)
    assert done == [mover] and e.last() == 4


def test_a_give_back_is_journaled_and_replayed(tmp_path):
    path = tmp_path / "run.journal"
    space = Space("j", journal=Journal(path))
    eid = space.enter(("j", int))
    element = space.element(eid)
    element.move_many([(i,) for i in range(3)])
    assert element.observe() == (0,)
    assert element.observe() == (1,)
    element.give_back([0], [(0,)])
    assert any(record[1:2] == ("unobserve",) for record in read_journal(path) if record[0] == eid)
    again = Space("j", journal=Journal(path)).element(eid)
    assert (again.first(), again.last()) == (0, 3)
    assert [again.observe() for _ in range(2)] == [(0,), (2,)]


def test_the_registry_holds_exactly_the_queued_waiters_with_their_caller():
    space = Space("r")
    element = space.element(space.enter(("r", int)))
    caller = Caller(task="t1", host="h", pid=5, app="app.py")
    done: list[Waiter] = []
    waiters = [observer(done) for _ in range(3)]
    for w in waiters:
        w.caller = caller
        element.submit(w)
    snapshot = space.waits.snapshot()
    assert len(snapshot) == 3 and {(w.caller.task, w.caller.app, w.op) for w in snapshot} == {
        ("t1", "app.py", "observe")
    }
    element.move((1,))  # completes one
    element.cancel(waiters[1])  # cancels one
    assert len(space.waits) == 1
    space.delelement(element.eid)  # the last one ends with the element
    assert len(space.waits) == 0
    assert isinstance(waiters[2].error, ElementDeletedError)


def test_submit_raises_at_once_on_a_deleted_element():
    e = Element(("w", int))
    e.end(ElementDeletedError("gone"))
    with pytest.raises(ElementDeletedError):
        e.submit(Waiter("observe"))
