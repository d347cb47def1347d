"""The waiter queues on their own (pastset.core.queues): FIFO order, lazy cancelling, reporting, the end."""

from __future__ import annotations

import threading
from typing import Any

from pastset.core.monitor import NO_MONITOR, no_journal, waiting_hook
from pastset.core.queues import WaiterQueues
from pastset.core.tuples import TupleLog
from pastset.core.waiter import Waiter


class Recorder:
    """A monitor with ``waiting_for`` that keeps every report."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, Waiter]] = []
        self.changes = 0

    def waiting(self, step: int) -> None:
        raise AssertionError("a monitor with waiting_for is told through it")

    def waiting_for(self, step: int, waiter: Waiter, element: Any) -> None:
        assert element == "the element"
        self.steps.append((step, waiter))

    def changed(self) -> None:
        self.changes += 1


def queues(delta: int | None = None) -> tuple[WaiterQueues, Recorder, list[tuple]]:
    log = TupleLog()
    log.delta = delta
    monitor, journal = Recorder(), []  # journal: the records, as the element's journal would write them
    cond = threading.Condition(threading.RLock())
    q = WaiterQueues(cond, log, monitor, lambda *change: journal.append(change), waiting_hook(monitor, "the element"))
    return q, monitor, journal


def record(*change: Any) -> tuple:
    return change


def test_blocked_moves_complete_in_the_order_they_blocked_as_room_appears() -> None:
    q, monitor, _ = queues(delta=1)
    done: list[Waiter] = []
    first, second = (Waiter("move", data=[(i,)], notify=done.append) for i in (1, 2))
    assert q.submit(Waiter("move", data=[(0,)]))  # room for one
    assert not q.submit(first) and not q.submit(second)
    assert [step for step, _ in monitor.steps] == [1, 1] and first.since > 0
    taker = Waiter("observe", notify=done.append)
    assert q.submit(taker) and taker.result == (0,)  # the tuple taken lets the first move in
    assert done == [first] and q.log.last == 2
    q.log.delta = None
    q.settle()
    assert done == [first, second] and q.log.last == 3 and q.count() == 0


def test_indexed_observers_get_their_tuple_when_it_is_moved() -> None:
    q, monitor, journal = queues()
    done: list[Waiter] = []
    later = Waiter("observe", index=1, notify=done.append)
    assert not q.submit(later) and q.count() == 1
    q.append(("zero",))
    assert not done
    q.append(("one",))
    assert done == [later] and later.result == ("one",) and not q.indexed
    assert journal == [record("move", ("zero",)), record("move", ("one",))] and monitor.changes == 2


def test_unindexed_observers_wait_in_order_and_pause_holds_them() -> None:
    q, _, journal = queues()
    done: list[Waiter] = []
    single, batch = Waiter("observe", notify=done.append), Waiter("observe_many", count=5, notify=done.append)
    q.paused = True
    q.append((1,))
    assert not q.submit(single) and not q.submit(batch)
    q.settle()
    assert not done
    q.paused = False
    q.append((2,))
    q.settle()
    assert done == [single, batch] and single.result == (1,) and batch.result == [(2,)] and batch.taken == [1]
    assert journal[-2:] == [record("observe"), record("observe")]  # one tuple each, whatever the op


def test_cancelled_waiters_are_skipped_then_compacted_once_they_are_many() -> None:
    q, monitor, _ = queues()
    waiters = [Waiter("observe", notify=lambda w: None) for _ in range(100)]
    for w in waiters:
        q.submit(w)
    for w in waiters[:-1]:
        q.drop(w)
    assert q.live(q.observers) and q.count() == 1
    assert len(q.observers) < 100 and q.stale < 65  # compacted on the way
    q.drop(waiters[-1])
    assert not q.live(q.observers) and q.count() == 0
    assert sum(step for step, _ in monitor.steps) == 0  # every start has its stop
    q.append((1,))
    q.settle()
    assert not any(w.done for w in waiters) and q.log.unobserved() == 1


def test_a_dropped_indexed_observer_leaves_at_once() -> None:
    q, _, _ = queues()
    w = Waiter("observe", index=3)
    q.submit(w)
    q.drop(w)
    assert w.cancelled and q.indexed == {}


def test_fail_all_empties_the_queues_and_gives_each_waiter_its_own_error() -> None:
    q, _, _ = queues(delta=1)
    q.append((0,))
    done: list[Waiter] = []
    mover, observer, indexed = (
        Waiter("move", data=[(1,)], notify=done.append),
        Waiter("observe", index=5, notify=done.append),
        Waiter("observe", index=7, notify=done.append),
    )
    for w in (mover, observer, indexed):
        q.submit(w)
    q.drop(indexed)
    q.fail_all(lambda: RuntimeError("ended"))
    assert done == [mover, observer] and mover.error is not observer.error
    assert isinstance(mover.error, RuntimeError) and not indexed.done
    assert (list(q.movers), list(q.observers), q.indexed) == ([], [], {})


def test_a_thread_waiter_is_woken_through_the_condition() -> None:
    q, _, _ = queues()
    w = Waiter("observe")
    with q.cond:
        assert not q.submit(w)
        woken = threading.Event()

        def wake() -> None:
            with q.cond:
                q.append((1,))
                q.settle()
                woken.set()

        threading.Thread(target=wake, daemon=True).start()
        assert q.cond.wait_for(lambda: w.done, timeout=5.0)
    assert woken.wait(5.0) and w.result == (1,)


def test_an_unattached_monitor_counts_only_and_records_nothing() -> None:
    hook = waiting_hook(NO_MONITOR, object())
    hook(1, Waiter("observe"))
    assert no_journal("move", (1,)) is None


def test_has_ready_is_true_between_a_change_and_the_settling_that_serves_it() -> None:
    """The element always settles in the same locked step as a change, so it never shows a ready
    waiter; here the step is cut in two to see that has_ready answers True when one could go on."""
    q, _, _ = queues(delta=1)
    observer = Waiter("observe", notify=lambda w: None)
    assert not q.submit(observer) and not q.has_ready(ended=False)  # nothing to observe
    q.log.append((1,))  # a tuple arrives, not yet settled
    assert q.has_ready(ended=False)
    q.settle()
    assert observer.done and not q.has_ready(ended=False)
    assert q.submit(Waiter("move", data=[(2,)]))  # fills delta
    mover = Waiter("move", data=[(3,)], notify=lambda w: None)
    assert not q.submit(mover) and not q.has_ready(ended=False)  # no room
    q.log.delta = None  # room appears
    assert q.has_ready(ended=False)
    q.settle()
    assert mover.done and not q.has_ready(ended=False)
    indexed = Waiter("observe", index=5, notify=lambda w: None)
    assert not q.submit(indexed) and not q.has_ready(ended=False)
    for i in range(3):
        q.log.append((i,))  # index 5 now exists, no one told the waiter yet
    assert q.has_ready(ended=False)
    assert q.has_ready(ended=True), "once the element ends, every queued waiter can go on (to its error)"


def test_the_waiterless_move_and_take_never_overtake_a_queued_waiter() -> None:
    q, monitor, journal = queues(delta=1)
    assert q.move_now((0,)) and not q.move_now((1,)), "delta leaves room for one"
    done: list[Waiter] = []
    mover = Waiter("move", data=[(1,)], notify=done.append)
    assert not q.submit(mover)
    assert q.take_now() == (0, (0,)), "the take makes room, and the queued move gets it"
    assert mover.done and q.log.last == 2
    assert not q.move_now((2,)), "the tuple the blocked move put in fills delta again"
    q.log.delta = None
    q.paused = True
    assert q.take_now() is None, "pause holds unindexed observes"
    observer = Waiter("observe", notify=done.append)
    assert not q.submit(observer)
    q.paused = False
    assert q.take_now() is None, "an observer queued first is served first"
    q.settle()
    assert observer.result == (1,) and q.take_now() is None, "nothing left to take"
    assert q.move_now((2,)) and q.take_now() == (2, (2,))
    assert [r[0] for r in journal] == ["move", "observe", "move", "observe", "move", "observe"]
    assert monitor.changes == 6 and done == [mover, observer]
