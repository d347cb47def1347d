"""The monitor protocol: the no-op monitor and journal of a detached element, and the waiter queues' hook."""

from __future__ import annotations

from typing import Any, cast

from pastset.core.monitor import NO_MONITOR, no_journal, waiting_hook
from pastset.core.waiter import Waiter


class Counting:
    """A monitor that only counts."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.changes = 0

    def waiting(self, step: int) -> None:
        self.steps.append(step)

    def changed(self) -> None:
        self.changes += 1


class Rich(Counting):
    """A monitor that wants to know which waiter, on which element."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, Any, Any]] = []

    def waiting_for(self, step: int, waiter: Any, element: Any) -> None:
        self.seen.append((step, waiter, element))


WAITER = cast(Waiter, object())


def test_a_detached_element_reports_to_nobody_and_journals_nothing() -> None:
    assert NO_MONITOR.waiting(1) is None
    assert NO_MONITOR.changed() is None
    assert no_journal("enter", 1, ("a", int), {"k": 1}) is None
    assert no_journal() is None


def test_a_plain_monitor_counts_waiters_through_the_hook() -> None:
    monitor = Counting()
    hook = waiting_hook(monitor, element="e1")
    hook(1, WAITER)
    hook(-1, WAITER)
    assert monitor.steps == [1, -1]


def test_a_monitor_that_asks_learns_which_waiter_on_which_element_and_is_not_counted_twice() -> None:
    monitor = Rich()
    element = object()
    hook = waiting_hook(monitor, element)
    hook(1, WAITER)
    hook(-1, WAITER)
    assert monitor.seen == [(1, WAITER, element), (-1, WAITER, element)]
    assert monitor.steps == [], "waiting_for replaces waiting"
