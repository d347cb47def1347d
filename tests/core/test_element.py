"""The element on its own: every row of SEMANTICS.md, with no network."""

from __future__ import annotations

import threading
import time

import pytest

from pastset.element import Element, check_template, deadline
from pastset.errors import (
    ElementDeletedError,
    ExpiredError,
    PastSetTimeoutError,
    PastSetTypeError,
    PastSetValueError,
    RunEndedError,
)


def start(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def wait_until(predicate, timeout: float = 5.0) -> None:
    """Wait for another thread to reach a state (bounded; fails the test if not)."""
    until = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < until, "condition not reached in time"
        time.sleep(0.001)


class Waits:
    """A monitor that counts blocked calls, so tests know a thread really blocks."""

    def __init__(self) -> None:
        self.blocked = 0
        self.lock = threading.Lock()

    def waiting(self, step: int) -> None:
        with self.lock:
            self.blocked += step

    def changed(self) -> None:
        pass


def element(template=("Test", int, float)) -> tuple[Element, Waits]:
    e = Element(template)
    w = Waits()
    e.attach(w)
    return e, w


# ------------------------------------------------------------------ pointers
def test_first_last_numbering_as_in_pypastset_simple():
    e, _ = element()
    assert (e.first(), e.last()) == (0, 0)
    e.move((42, 3.14))
    assert (e.first(), e.last()) == (0, 1)
    assert e.observe() == (42, 3.14)
    assert (e.first(), e.last()) == (1, 1)


def test_indices_follow_move_order_and_indexed_observe_keeps_first():
    e, _ = element()
    for i in range(5):
        e.move((i, float(i)))
    assert [e.observe(i) for i in range(5)] == [(i, float(i)) for i in range(5)]
    assert e.first() == 0
    assert e.observe(e.first()) == (0, 0.0)  # even i == first leaves first alone
    assert e.first() == 0
    assert e.observe() == (0, 0.0)
    assert e.first() == 1
    assert e.observe(-5) == (1, 1.0)  # any negative index is unindexed


def test_template_returned_and_tuples_stored_as_given():
    e, _ = element(("Test", int, float))
    assert e.template() == ("Test", int, float)
    e.move((1.5, "not an int"))  # loose checking, as pyPastSet
    e.move([1, 2])
    assert e.observe() == (1.5, "not an int")
    assert e.observe() == [1, 2]


# ------------------------------------------------------------------ blocking
def test_unindexed_observe_blocks_until_a_move():
    e, w = element()
    got = []
    t = start(lambda: got.append(e.observe()))
    wait_until(lambda: w.blocked == 1)
    assert got == []
    e.move((7, 7.0))
    t.join(5)
    assert got == [(7, 7.0)]
    assert w.blocked == 0


def test_indexed_observe_blocks_until_index_exists():
    e, w = element()
    got = []
    t = start(lambda: got.append(e.observe(2)))
    e.move((0, 0.0))
    e.move((1, 1.0))
    wait_until(lambda: w.blocked == 1)
    assert got == []
    e.move((2, 2.0))
    t.join(5)
    assert got == [(2, 2.0)]
    assert e.first() == 0


def test_move_blocks_at_delta_and_blocked_moves_complete_in_fifo_order():
    e, w = element()
    assert e.delta(2) == 2
    e.move((0, 0.0))
    e.move((1, 1.0))
    threads = []
    for i in range(2, 12):
        threads.append(start(e.move, (i, float(i))))
        wait_until(lambda i=i: w.blocked == i - 1)  # each blocks before the next starts
    assert e.last() == 2
    taken = [e.observe() for _ in range(12)]
    for t in threads:
        t.join(5)
    assert [x[0] for x in taken] == list(range(12))
    assert [e.observe(i)[0] for i in range(12)] == list(range(12))


def test_raising_delta_releases_that_many_blocked_moves_in_order():
    e, w = element()
    e.delta(1)
    e.move((0, 0.0))
    threads = []
    for i in range(1, 6):
        threads.append(start(e.move, (i, float(i))))
        wait_until(lambda i=i: w.blocked == i)
    e.delta(3)  # room for two more
    wait_until(lambda: e.last() == 3)
    assert [e.observe(i)[0] for i in range(3)] == [0, 1, 2]
    wait_until(lambda: w.blocked == 3)  # the two released movers have returned
    assert e.last() == 3
    e.delta(0)  # unbounded: all go, in order
    for t in threads:
        t.join(5)
    assert [e.observe(i)[0] for i in range(6)] == [0, 1, 2, 3, 4, 5]


def test_lowering_delta_below_unobserved_is_accepted():
    e, _ = element()
    for i in range(5):
        e.move((i, 0.0))
    assert e.delta(2) == 2
    assert e.last() - e.first() == 5
    with deadline(0.05), pytest.raises(PastSetTimeoutError):
        e.move((9, 0.0))
    for _ in range(4):
        e.observe()
    e.move((5, 0.0))  # last - first == 1 < 2: room again
    assert e.last() == 6


@pytest.mark.parametrize("value", [None, 0, -3])
def test_unset_zero_or_negative_delta_is_unbounded(value):
    e, _ = element()
    e.delta(value)
    for i in range(1000):
        e.move((i, 0.0))
    assert e.last() == 1000


def test_delta_read_and_bad_values():
    e, _ = element()
    assert e.delta() is None
    assert e.delta(4.0) == 4
    with pytest.raises(PastSetTypeError, match="delta must be a number"):
        e.delta("3")
    with pytest.raises(PastSetValueError, match="whole"):
        e.delta(2.5)
    assert e.delta() == 4


# ------------------------------------------------------ exactly once, threads
def test_every_tuple_observed_exactly_once_by_many_concurrent_observers():
    e, _ = element(("bag", int))
    total, observers, movers = 20_000, 16, 4
    seen: list[list[int]] = [[] for _ in range(observers)]
    stop = object()

    def observe(k: int) -> None:
        while True:
            item = e.observe()
            if item is stop:
                return
            seen[k].append(item[0])

    def move(k: int) -> None:
        for i in range(k, total, movers):
            e.move((i,))

    obs = [start(observe, k) for k in range(observers)]
    mov = [start(move, k) for k in range(movers)]
    for t in mov:
        t.join(30)
    for _ in range(observers):
        e.move(stop)
    for t in obs:
        t.join(30)
    everything = sorted(x for part in seen for x in part)
    assert everything == list(range(total))
    assert sum(1 for part in seen if part) > 1  # the work really was shared
    assert e.first() == e.last() == total + observers


def test_moves_from_many_threads_get_dense_indices():
    e, _ = element(("x", int))

    def move(k: int) -> None:
        for i in range(1000):
            e.move((k * 1000 + i,))

    threads = [start(move, k) for k in range(8)]
    for t in threads:
        t.join(30)
    values = [e.observe(i)[0] for i in range(e.last())]
    assert sorted(values) == list(range(8000))
    for k in range(8):  # each thread's own moves keep their order
        mine = [v for v in values if v // 1000 == k]
        assert mine == sorted(mine)


# ----------------------------------------------------------------------- axe
def test_axe_frees_only_observed_tuples():
    e, _ = element()
    for i in range(10):
        e.move((i, 0.0))
    for _ in range(4):
        e.observe()
    e.axe(8)  # asks for 0..7, only 0..3 were observed
    assert e.stored() == 6
    with pytest.raises(ExpiredError, match="tuple 3"):
        e.observe(3)
    assert e.observe(4) == (4, 0.0)  # not freed: not yet observed
    assert [e.observe()[0] for _ in range(6)] == [4, 5, 6, 7, 8, 9]
    e.axe(100)
    assert e.stored() == 0
    with pytest.raises(ExpiredError):
        e.observe(9)
    e.move((10, 0.0))
    assert e.observe(10) == (10, 0.0)
    assert (e.first(), e.last()) == (10, 11)


def test_axe_lower_than_before_and_on_empty_element_is_harmless():
    e, _ = element()
    e.axe(5)
    e.move((0, 0.0))
    e.observe()
    e.axe(1)
    e.axe(0)
    assert e.stored() == 0
    assert (e.first(), e.last()) == (1, 1)


# ------------------------------------------------------------ deletion & end
def test_end_wakes_blocked_calls_and_refuses_later_ones():
    e, w = element()
    errors = []

    def observe() -> None:
        try:
            e.observe()
        except ElementDeletedError as err:
            errors.append(err)

    def move() -> None:
        try:
            e.move((1, 1.0))
        except ElementDeletedError as err:
            errors.append(err)

    e.delta(1)
    e.move((0, 0.0))
    e.observe()
    e.move((0, 0.0))
    t1 = start(move)
    wait_until(lambda: w.blocked == 1)
    e2, _ = element()
    e2.end(ElementDeletedError("gone"))
    for call in (e2.move, e2.observe, e2.first, e2.last):
        with pytest.raises(ElementDeletedError):
            call() if call in (e2.observe, e2.first, e2.last) else call((1, 1.0))
    e.end(ElementDeletedError("deleted"))
    t1.join(5)
    t2 = start(observe)
    t2.join(5)
    assert len(errors) == 2
    assert e.stored() == 0


def test_run_end_error_reaches_blocked_indexed_observer():
    e, w = element()
    errors = []

    def observe() -> None:
        try:
            e.observe(3)
        except RunEndedError as err:
            errors.append(err)

    t = start(observe)
    wait_until(lambda: w.blocked == 1)
    e.end(RunEndedError("the run has ended"))
    t.join(5)
    assert [str(x) for x in errors] == ["the run has ended"]


# ------------------------------------------------------------------ timeouts
def test_deadline_bounds_blocking_calls():
    e, w = element()
    with deadline(0.05):
        with pytest.raises(PastSetTimeoutError):
            e.observe()
        with pytest.raises(PastSetTimeoutError):
            e.observe(0)
    assert w.blocked == 0
    e.delta(1)
    e.move((0, 0.0))
    with deadline(0.05), pytest.raises(PastSetTimeoutError):
        e.move((1, 1.0))
    assert e.last() == 1  # the timed-out move stored nothing
    e.observe()
    e.move((2, 2.0))
    assert e.observe(1) == (2, 2.0)


# ------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("template", [["Test", int], "Test", None, 5])
def test_template_must_be_tuple(template):
    with pytest.raises(PastSetTypeError, match="template must be a tuple"):
        check_template(template)


def test_template_constants_must_be_hashable():
    with pytest.raises(PastSetTypeError, match="position 1"):
        check_template(("x", [1, 2]))


@pytest.mark.parametrize("index", ["1", 1.0, None, True])
def test_index_must_be_integer(index):
    e, _ = element()
    e.move((0, 0.0))
    with pytest.raises(PastSetTypeError, match="index must be an integer"):
        e.observe(index)
    with pytest.raises(PastSetTypeError):
        e.axe(index)


# ------------------------------------------------------------- X-functions
class Doubler(Element):
    """New style: documented hooks only."""

    def move(self, data):
        super().move(tuple(x * 2 for x in data))

    def observe(self, index=-1):
        data = super().observe(index)
        if index < 0:
            self.set_entry(self.first() - 1, ("seen", *data))
        return data


def test_new_style_xfunction_filters_both_ways():
    e = Doubler(("d", int))
    e.move((1, 2))
    assert e.observe() == (2, 4)
    assert e.observe(0) == ("seen", 2, 4)


def test_old_style_xfunction_private_names_still_work():
    # pyPastSet X-functions named their subclass Element and used self.__template
    # and super().__set_entry, mangled to _Element__template / _Element__set_entry.
    namespace: dict = {"pastset_element": Element}
    exec(
        "class Element(pastset_element):\n"
        "    def move(self, data):\n"
        "        types = [t if isinstance(t, type) else t.__class__ for t in self.__template]\n"
        "        super(Element, self).move(tuple(c(v) for c, v in zip(types, data)))\n"
        "    def observe(self, index):\n"
        "        data = super(Element, self).observe(index)\n"
        "        if index == -1:\n"
        "            data = data + ('stamped',)\n"
        "            super(Element, self).__set_entry(super(Element, self).first() - 1, data)\n"
        "        return data\n",
        namespace,
    )
    e = namespace["Element"](("cast", int, float))
    e.move(("cast", "7", "2.5"))
    assert e.observe(0) == ("cast", 7, 2.5)
    assert e.observe(-1) == ("cast", 7, 2.5, "stamped")
    assert e.observe(0) == ("cast", 7, 2.5, "stamped")


def test_set_entry_refuses_missing_and_freed_indices():
    e, _ = element()
    with pytest.raises(PastSetValueError, match="beyond"):
        e.set_entry(0, (1,))
    e.move((1, 1.0))
    e.observe()
    e.axe(1)
    with pytest.raises(ExpiredError):
        e.set_entry(0, (1,))


def test_lock_is_reentrant_and_released_while_waiting():
    e, w = element()
    got = []

    def xcall() -> None:
        with e.lock:  # what the server does around an X-function call
            got.append(e.observe())

    t = start(xcall)
    wait_until(lambda: w.blocked == 1)
    e.move((1, 1.0))  # would deadlock if the waiting thread kept the lock
    t.join(5)
    assert got == [(1, 1.0)]


def test_pause_holds_unindexed_observes_only():
    e, w = element()
    e.move((0, 0.0))
    e.pause()
    got = []
    t = start(lambda: got.append(e.observe()))
    wait_until(lambda: w.blocked == 1)
    assert e.observe(0) == (0, 0.0)
    e.move((1, 1.0))
    assert got == []
    assert e.has_ready_waiter() is False
    e.pause(False)
    t.join(5)
    assert got == [(0, 0.0)]


def test_a_satisfiable_waiter_is_served_at_once_so_none_is_ever_left_ready():
    """has_ready_waiter() asks whether a blocked call could go on but has not: the element hands a
    tuple (or a place) to its waiters in the same step that makes it possible, so after every
    operation the answer is False, while queued() shows the calls really were waiting."""
    e, _ = element()
    t = start(e.observe, 1)
    wait_until(lambda: e.queued() == 1)
    e.move((0, 0.0))
    assert e.queued() == 1 and not e.has_ready_waiter()  # index 1 does not exist yet
    with e.lock:  # even before the waiting thread can run again, it has been served
        e.move((1, 1.0))
        assert e.queued() == 0 and not e.has_ready_waiter()
    t.join(5)
    e.pause(True)
    observer = start(e.observe)
    wait_until(lambda: e.queued() == 1)
    assert not e.has_ready_waiter()  # a tuple is there, but the element is paused
    with e.lock:
        e.pause(False)
        assert e.queued() == 0 and not e.has_ready_waiter()
    observer.join(5)
    e.delta(1)  # (1, 1.0) is still unobserved: the element is full
    mover = start(e.move, (4, 4.0))
    wait_until(lambda: e.queued() == 1)
    assert not e.has_ready_waiter()  # no room: the move cannot go on
    with e.lock:
        e.delta(5)  # room: the blocked move is given its place in the same step
        assert e.queued() == 0 and not e.has_ready_waiter()
    mover.join(5)
    assert e.last() == 3


# ------------------------------------------------------------- batch calls
def test_move_many_keeps_order_and_observe_many_takes_what_is_there():
    e, w = element(("b", int))
    e.move_many([(i,) for i in range(10)])
    assert e.last() == 10
    assert e.observe_many(4) == [(0,), (1,), (2,), (3,)]
    assert e.first() == 4
    assert e.observe_many(100) == [(i,) for i in range(4, 10)]
    got = []
    t = start(lambda: got.append(e.observe_many(5)))
    wait_until(lambda: w.blocked == 1)  # none there: blocks for at least one
    e.move((10,))
    t.join(5)
    assert got == [[(10,)]]
    with pytest.raises(PastSetValueError):
        e.observe_many(0)


def test_observe_many_gives_each_tuple_to_exactly_one_observer():
    e, _ = element(("bm", int))
    total = 20_000
    seen: list[list[int]] = [[] for _ in range(8)]

    def take(k: int) -> None:
        while True:
            batch = e.observe_many(37)
            work = [item[0] for item in batch if item != (-1,)]
            seen[k].extend(work)
            stops = len(batch) - len(work)
            if stops:
                for _ in range(stops - 1):  # keep one stop, pass the others on
                    e.move((-1,))
                return

    threads = [start(take, k) for k in range(8)]
    e.move_many([(i,) for i in range(total)])
    e.move_many([(-1,)] * 8)
    for t in threads:
        t.join(30)
    taken = sorted(x for part in seen for x in part)
    assert taken == list(range(total))  # each exactly once
    assert sum(1 for part in seen if part) > 1


def test_move_many_respects_delta():
    e, w = element(("bd", int))
    e.delta(3)
    t = start(e.move_many, [(i,) for i in range(6)])
    wait_until(lambda: w.blocked == 1)
    assert e.last() == 3
    assert e.observe_many(3) == [(0,), (1,), (2,)]
    t.join(5)
    assert e.last() == 6
