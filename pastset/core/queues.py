"""The FIFO queues of the operations blocked on one element, and how they settle.

Every operation on an element that cannot complete at once is a
:class:`~pastset.core.waiter.Waiter` in one of three queues, and the waiters of
a queue complete strictly in the order they queued: whoever changes the
element's state completes those that became ready.  Running an operation now
or queueing it, cancelling it cheaply, settling the queues after a change,
reporting each waiter that starts or stops waiting and waking each that
completes is machinery of its own.  :class:`WaiterQueues` holds it, so that
:class:`pastset.core.element.Element` reads as the element's contract; the
element drives it under its lock.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from pastset.core.monitor import Monitor
from pastset.core.tuples import TupleLog
from pastset.core.waiter import Waiter

__all__ = ["WaiterQueues"]

#: cancelled waiters left in the deques before compacting them is considered
_COMPACT_AFTER = 64


class WaiterQueues:
    """The waiters of one element: blocked moves, unindexed observers, indexed observers.

    ``movers`` holds moves blocked by delta and ``observers`` the unindexed
    observes (``observe`` and ``observe_many``), both in the order they blocked;
    ``indexed`` maps an index not yet moved to the observers waiting for it.
    ``paused`` holds the unindexed observers (moves and indexed observes go on).
    Cancelling is lazy in the two deques: a cancelled waiter stays there
    (``stale`` counts them) until it reaches the head, or until they are many
    and the deques are compacted.

    The queues move tuples into and out of ``log``, record those changes with
    ``journal``, tell ``monitor`` of them, and tell ``waiting(step, waiter)`` of
    every waiter that starts (+1) or stops (-1) waiting; the element sets these
    when it is attached.  A completed waiter is told through its ``notify``,
    or, if it has none, by waking ``cond``.  Not thread-safe: the owner holds
    the lock of ``cond``.
    """

    __slots__ = (
        "cond",
        "indexed",
        "journal",
        "log",
        "monitor",
        "movers",
        "observers",
        "paused",
        "stale",
        "waiting",
    )

    def __init__(
        self,
        cond: threading.Condition,
        log: TupleLog,
        monitor: Monitor,
        journal: Callable[..., None],
        waiting: Callable[[int, Waiter], None],
    ) -> None:
        self.cond = cond
        self.log = log
        self.monitor = monitor
        self.journal = journal
        self.waiting = waiting
        self.movers: collections.deque[Waiter] = collections.deque()
        self.observers: collections.deque[Waiter] = collections.deque()
        self.indexed: dict[int, list[Waiter]] = {}
        self.stale = 0  # cancelled waiters still in a deque
        self.paused = False

    # -------------------------------------------------------------- running
    def submit(self, waiter: Waiter) -> bool:
        """Run ``waiter``'s operation now if it can complete (True), else queue it (False).

        The element has checked that it has not ended and that an indexed
        observe does not ask for a freed tuple.
        """
        log = self.log
        op = waiter.op
        if op == "move":
            data = waiter.data or []
            waiter.data = data
            if not self.live(self.movers):
                moved = 0
                while moved < len(data) and log.room():
                    self.append(data[moved])
                    moved += 1
                if moved:
                    del data[:moved]
                    self.settle()
                if not data:
                    waiter.done = True
                    return True
            self.enqueue(waiter, self.movers)
            return False
        if op == "observe" and waiter.index >= 0:
            index = waiter.index
            if index < log.last:
                waiter.result = log.get(index)
                waiter.done = True
                return True
            self.enqueue(waiter, self.indexed.setdefault(index, []))
            return False
        if not self.live(self.observers) and log.unobserved() and not self.paused:
            self.serve(waiter)
            self.settle()  # the tuple taken makes room for blocked moves
            return True
        self.enqueue(waiter, self.observers)
        return False

    def move_now(self, data: Any) -> bool:
        """Move ``data`` in now if nothing makes it wait (no blocked move, room under delta); else False.

        The common move, without building a waiter for it.
        """
        if self.live(self.movers) or not self.log.room():
            return False
        self.append(data)
        self.settle()
        return True

    def take_now(self) -> tuple[int, Any] | None:
        """Take the oldest unobserved tuple now, as (index, tuple), if no observer queued first; else None.

        The common unindexed observe, without building a waiter for it.
        """
        log = self.log
        if self.paused or not log.unobserved() or self.live(self.observers):
            return None
        indices, values = log.take(1)
        self.journal("observe")
        self.monitor.changed()
        self.settle()  # the tuple taken makes room for blocked moves
        return indices[0], values[0]

    def append(self, data: Any) -> None:
        """Move ``data`` in at index ``last``, whatever delta says; observers waiting for that index get it."""
        self.journal("move", data)
        index = self.log.append(data)
        self.monitor.changed()
        if self.indexed:
            waiters = self.indexed.pop(index, None)
            if waiters:
                for waiter in waiters:
                    self.complete(waiter, data)

    def serve(self, waiter: Waiter) -> None:
        """Give an unindexed observer its tuple(s) (there is at least one unobserved)."""
        indices, values = self.log.take(waiter.count)
        if len(indices) == 1:
            self.journal("observe")
        else:
            self.journal("observe", len(indices))
        waiter.taken = indices
        waiter.result = values[0] if waiter.op == "observe" else values
        waiter.done = True
        self.monitor.changed()

    def settle(self) -> None:
        """Complete every queued waiter that can go on now, in the order they queued."""
        movers, observers, log = self.movers, self.observers, self.log
        progress = True
        while progress:
            progress = False
            while movers and log.room():
                waiter = movers[0]
                if waiter.cancelled:
                    movers.popleft()
                    self.stale -= 1
                    continue
                data = waiter.data
                assert data is not None
                self.append(data.pop(0))
                progress = True
                if not data:
                    movers.popleft()
                    self.complete(waiter, None)
            while observers and not self.paused and log.unobserved():
                waiter = observers.popleft()
                if waiter.cancelled:
                    self.stale -= 1
                    continue
                if waiter.alive is not None and not waiter.alive():
                    waiter.cancelled = True
                    self.waiting(-1, waiter)
                    continue
                self.serve(waiter)
                self.finish(waiter)
                progress = True

    def has_ready(self, ended: bool) -> bool:
        """True if some queued waiter could go on now (``ended``: it would raise)."""
        observers = self.live(self.observers)
        if ended:
            return bool(observers or self.live(self.movers) or self.indexed)
        log = self.log
        if observers and log.unobserved() and not self.paused:
            return True
        if self.live(self.movers) and log.room():
            return True
        return any(i < log.last for i in self.indexed)

    # ------------------------------------------------------------- queueing
    def enqueue(self, waiter: Waiter, queue: Any) -> None:
        """Put ``waiter`` at the end of ``queue`` (one of the above), noting when it began to wait."""
        if not waiter.since:
            waiter.since = time.time()
        queue.append(waiter)
        self.waiting(1, waiter)

    def drop(self, waiter: Waiter) -> None:
        """Cancel a queued waiter: an indexed observer leaves at once, the others when reached."""
        waiter.cancelled = True
        if waiter.op == "observe" and waiter.index >= 0:
            waiters = self.indexed.get(waiter.index)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self.indexed[waiter.index]
        else:
            self.stale += 1
            if self.stale > _COMPACT_AFTER:
                self._compact()
        self.waiting(-1, waiter)

    def _compact(self) -> None:
        """Drop cancelled waiters from the deques once they are many (cancel is lazy there)."""
        total = len(self.movers) + len(self.observers)
        if self.stale * 2 < total:
            return
        self.movers = collections.deque(w for w in self.movers if not w.cancelled)
        self.observers = collections.deque(w for w in self.observers if not w.cancelled)
        self.stale = 0

    def live(self, queue: collections.deque[Waiter]) -> bool:
        """True if ``queue`` holds a waiter that was not cancelled."""
        if not queue:
            return False
        if len(queue) > self.stale:
            return True
        return any(not w.cancelled for w in queue)

    def count(self) -> int:
        """How many waiters are queued and not cancelled."""
        count = sum(1 for w in self.movers if not w.cancelled)
        count += sum(1 for w in self.observers if not w.cancelled)
        return count + sum(len(ws) for ws in self.indexed.values())

    def fail_all(self, error: Callable[[], BaseException]) -> None:
        """Empty every queue, completing each waiter still waiting with a fresh ``error()``."""
        queued = [*self.movers, *self.observers]
        for waiters in self.indexed.values():
            queued.extend(waiters)
        self.movers.clear()
        self.observers.clear()
        self.indexed.clear()
        for waiter in queued:
            if not waiter.cancelled and not waiter.done:
                self.complete(waiter, None, error())

    def complete(self, waiter: Waiter, result: Any, error: BaseException | None = None) -> None:
        """Complete ``waiter`` with ``result`` (or ``error``) and tell it."""
        waiter.result = result
        waiter.error = error
        waiter.done = True
        self.finish(waiter)

    def finish(self, waiter: Waiter) -> None:
        """Tell a waiter that just completed: through its ``notify``, else by waking the condition."""
        self.waiting(-1, waiter)
        if waiter.notify is not None:
            waiter.notify(waiter)
        else:
            self.cond.notify_all()
