"""The activity of a space: which tasks are blocked, who waits on what, and what changed.

To tell when a run has gone quiet (every running task blocked in an operation
that nothing can complete any more), and to show who waits on what, a space
learns from each of its elements which operations start and stop waiting and
that its state changed: it is their monitor
(:class:`pastset.core.monitor.Monitor`).  That bookkeeping is :class:`Activity`,
apart from the elements' registry in :class:`pastset.core.space.Space`; each
element reports to it through an :class:`ElementMonitor`, which also counts the
element's changes per task.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pastset.core.element import Element
from pastset.core.waits import Caller, Wait, WaitRegistry

__all__ = ["Activity", "ElementMonitor"]


class Activity(threading.Condition):
    """A condition notified whenever a task starts or stops blocking, or the state changes.

    It counts the blocked operations of each task (``blocked``), records each
    blocked operation with its caller in ``waits``, and moves ``generation`` on
    at every change, so that equal values mean nothing happened in between.
    ``current_task`` tells which spawned task (if any) the calling thread
    serves; ``templates`` are the space's templates by element id.
    """

    def __init__(self, current_task: Callable[[], str | None], templates: dict[int, tuple]) -> None:
        super().__init__()
        self.current_task = current_task
        self.templates = templates
        self.blocked: dict[str, int] = {}
        self.generation = 0
        #: every blocked operation of the space, with its caller (who waits on what)
        self.waits = WaitRegistry()

    def waiting(self, step: int) -> None:
        """The calling thread's task starts (+1) or stops (-1) blocking (Monitor protocol)."""
        self._count(self.current_task(), step)

    def waiting_for(self, step: int, waiter: Any, element: Element) -> None:
        """One waiter starts (+1) or stops (-1) waiting on ``element`` (Monitor, with who waits).

        Called under the element's lock, possibly by the thread that completes
        the waiter: the task is the waiter's own, never the calling thread's.
        """
        if step > 0:
            caller = waiter.caller
            if caller is None:
                caller = Caller(task=self.current_task() or "")
            waiter.task = caller.task or None
            waiter.key = self.waits.add(
                Wait(caller, element.eid, self.templates.get(element.eid, ()), waiter.op, waiter.since, waiter.timeout)
            )
        else:
            self.waits.remove(waiter.key)
        self._count(waiter.task, step)

    def _count(self, task: str | None, step: int) -> None:
        with self:
            self.generation += 1
            if task is not None:
                count = self.blocked.get(task, 0) + step
                if count:
                    self.blocked[task] = count
                else:
                    self.blocked.pop(task, None)
            self.notify_all()

    def changed(self) -> None:
        """Note a state change (Monitor protocol); cheap, called under element locks."""
        self.generation += 1

    def task_gone(self, task: str) -> None:
        """Forget a finished task's count and wake those waiting on the activity."""
        with self:
            self.blocked.pop(task, None)
            self.generation += 1
            self.notify_all()


class ElementMonitor:
    """An element's monitor: the space's :class:`Activity`, plus a count of its changes per task.

    ``changed`` runs under the element's lock, so the counts of one element are
    never updated by two threads at once; the cost is one dictionary update per
    operation.
    """

    __slots__ = ("activity", "counts")

    def __init__(self, activity: Activity) -> None:
        self.activity = activity
        self.counts: dict[str, int] = {}

    def waiting(self, step: int) -> None:
        self.activity.waiting(step)

    def waiting_for(self, step: int, waiter: Any, element: Element) -> None:
        self.activity.waiting_for(step, waiter, element)

    def changed(self) -> None:
        activity = self.activity
        activity.generation += 1
        task = activity.current_task() or ""
        self.counts[task] = self.counts.get(task, 0) + 1
