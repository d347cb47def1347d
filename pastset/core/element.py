"""The PastSet element: an ordered log of tuples under one template.

This module holds the pure semantics of SEMANTICS.md and no network code, so it
can be tested, reasoned about and subclassed on its own.  The server keeps one
:class:`Element` per template and calls its methods from many threads at once.

An element is also the base class of X-functions.  An X-function module defines
``class Element(pastset.core.element.Element)`` and overrides :meth:`Element.move`
(X-in) and/or :meth:`Element.observe` (X-out), chaining to ``super()``.  The
documented hooks for a subclass are the public methods below plus
:meth:`Element.set_entry`.  Modules written for pyPastSet that reach into the
private names ``self.__template`` and ``self.__set_entry`` keep working: Python
mangles those to ``_Element__template`` and ``_Element__set_entry`` in a subclass
that is also called ``Element``, and both exist here under exactly those names.

The server holds :attr:`Element.lock` around a whole X-function call, so an
override runs atomically with respect to other operations on the same element,
except while it is blocked inside a base operation (the lock is re-entrant and a
wait releases it fully).
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pastset.core.checks import check_delta, check_index, check_template, check_timeout, template_key
from pastset.core.waiter import Waiter, _limits, calling, current_caller, deadline
from pastset.errors import (
    ElementDeletedError,
    ExpiredError,
    PastSetTimeoutError,
    PastSetValueError,
)

__all__ = [
    "Element",
    "Monitor",
    "Waiter",
    "calling",
    "check_delta",
    "check_index",
    "check_template",
    "check_timeout",
    "current_caller",
    "deadline",
    "template_key",
]


class Monitor(Protocol):
    """What the server learns from an element, for run-wide bookkeeping."""

    def waiting(self, step: int) -> None:
        """The calling thread starts (+1) or stops (-1) blocking in an operation."""

    def changed(self) -> None:
        """The element's state changed (a tuple moved or observed, delta, deletion)."""


class _NoMonitor:
    def waiting(self, step: int) -> None:
        pass

    def changed(self) -> None:
        pass


_NO_MONITOR = _NoMonitor()


def _no_journal(*record: Any) -> None:
    pass


class Element:
    """The ordered log of all tuples moved under one template.

    Indices are 0, 1, 2, ... in the order moves completed and are never reused.
    ``first`` is the oldest tuple not yet observed without an index; ``last`` is
    the index the next move gets.  See SEMANTICS.md for the full contract.

    Every operation that cannot complete at once is a :class:`Waiter` in one
    of the element's FIFO queues (blocked moves, unindexed observers, indexed
    observers by index); whoever changes the state completes the waiters that
    became ready, in the order they queued.  :meth:`submit` and :meth:`cancel`
    are the non-blocking interface the server's event loop uses; the blocking
    methods (:meth:`move`, :meth:`observe`, ...) queue a waiter the same way and
    wait on the element's condition for it.
    """

    def __init__(self, template: tuple) -> None:
        self.__template = template
        self.__cond = threading.Condition(threading.RLock())
        self.__data: list[Any] = []  # tuple i lives at __data[i - __base]
        self.__base = 0  # indices below this were freed by axe
        self.__first = 0  # the lowest index never taken by an unindexed observe
        self.__returned: list[int] = []  # taken, then given back: unobserved again (sorted, all < __first)
        self.__last = 0
        self.__delta: int | None = None
        self.__movers: collections.deque[Waiter] = collections.deque()
        self.__observers: collections.deque[Waiter] = collections.deque()
        self.__indexed: dict[int, list[Waiter]] = {}
        self.__stale = 0  # cancelled waiters still in a queue
        self.__ended: BaseException | None = None
        self.__monitor: Monitor = _NO_MONITOR
        self.__waiting: Callable[[int, Waiter], None] = _count_only(_NO_MONITOR)
        self.__journal: Callable[..., None] = _no_journal
        self.__paused = False
        self.__recent: int | None = None  # the index the latest unindexed observe took
        #: the element's id in its space (set by attach), for the views of who waits
        self.eid = 0

    # ----------------------------------------------------------------- hooks
    @property
    def lock(self) -> threading.RLock:
        """The element's re-entrant lock; hold it to make several calls atomic."""
        return self.__cond  # type: ignore[return-value]

    def attach(self, monitor: Monitor, journal: Callable[..., None] | None = None, eid: int = 0) -> None:
        """Report waits and changes to ``monitor``, and record changes with ``journal``.

        A monitor with a ``waiting_for(step, waiter, element)`` method learns
        which waiter starts or stops waiting; otherwise ``waiting(step)`` counts them.
        """
        self.__monitor = monitor
        self.__journal = journal or _no_journal
        self.eid = eid
        rich = getattr(monitor, "waiting_for", None)
        self.__waiting = (lambda step, waiter: rich(step, waiter, self)) if rich is not None else _count_only(monitor)

    def replay(self, kind: str, *args: Any) -> None:
        """Re-apply one journal record, without blocking or journaling (recovery)."""
        with self.__cond:
            if kind == "move":
                self.__data.append(args[0])
                self.__last += 1
            elif kind == "observe":
                self.__take(args[0] if args else 1, journal=False)
            elif kind == "unobserve":
                self.__restore(args[0])
            elif kind == "delta":
                self.__delta = args[0]
            elif kind == "axe":
                upto = min(args[0], self.__lowest())
                if upto > self.__base:
                    del self.__data[: upto - self.__base]
                    self.__base = upto
            elif kind == "set" and self.__base <= args[0] < self.__last:
                self.__data[args[0] - self.__base] = args[1]

    def set_entry(self, index: int, data: Any) -> None:
        """Replace the stored tuple ``index`` (an X-out may annotate what it returned)."""
        with self.__cond:
            self.__check()
            if index < self.__base:
                raise ExpiredError(f"tuple {index} was freed by axe and cannot be replaced")
            if index >= self.__last:
                raise PastSetValueError(
                    f"set_entry({index}) is beyond the last stored tuple ({self.__last - 1}); "
                    "new tuples are added with move"
                )
            self.__data[index - self.__base] = data
            self.__journal("set", index, data)

    def __set_entry(self, index: int, data: Any) -> None:
        # pyPastSet's private hook; subclasses named Element reach it by name mangling.
        self.set_entry(index, data)

    def would_wait(self, moves: int = 0, index: int = -1) -> bool:
        """True if an operation would block now: a move of ``moves`` tuples, else an observe of ``index``.

        A negative ``index`` is an unindexed observe.  The answer holds only
        while :attr:`lock` is held.
        """
        with self.__cond:
            if self.__ended is not None:
                return False  # the operation raises at once
            if moves:
                if self.__live(self.__movers):
                    return True  # blocked moves go first
                return bool(self.__delta and self.__delta > 0 and self.__unobserved() + moves > self.__delta)
            if index < 0:
                return not self.__unobserved() or self.__paused
            return index >= self.__last

    # ------------------------------------------------- non-blocking interface
    def submit(self, waiter: Waiter) -> bool:
        """Run ``waiter``'s operation now if it can complete (True), else queue it (False).

        Raises at once what the operation raises at once (a deleted element, an
        expired index).  A queued waiter completes later, under the lock of
        whoever makes it ready, and is told through ``waiter.notify``.
        """
        with self.__cond:
            self.__check()
            op = waiter.op
            if op == "move":
                data = waiter.data or []
                waiter.data = data
                if not self.__live(self.__movers):
                    moved = 0
                    while moved < len(data) and self.__room():
                        self.__append(data[moved])
                        moved += 1
                    if moved:
                        del data[:moved]
                        self.__settle()
                    if not data:
                        waiter.done = True
                        return True
                self.__enqueue(waiter, self.__movers)
                return False
            if op == "observe" and waiter.index >= 0:
                index = waiter.index
                if index < self.__base:
                    raise self.__expired(index)
                if index < self.__last:
                    waiter.result = self.__data[index - self.__base]
                    waiter.done = True
                    return True
                self.__enqueue(waiter, self.__indexed.setdefault(index, []))
                return False
            if not self.__live(self.__observers) and self.__unobserved() and not self.__paused:
                self.__serve(waiter)
                self.__settle()  # the tuple taken makes room for blocked moves
                return True
            self.__enqueue(waiter, self.__observers)
            return False

    def cancel(self, waiter: Waiter) -> bool:
        """Take a queued waiter out (its caller left or gave up); False if it had completed already."""
        with self.__cond:
            if waiter.done or waiter.cancelled:
                return False
            self.__drop(waiter)
            return True

    def give_back(self, indices: list[int], values: list[Any]) -> None:
        """Make tuples an unindexed observe took unobserved again: their reply never reached the caller.

        Each goes back to its own index (so ``first`` and the order are as if it
        had never been taken); one already freed by axe is moved again as a new
        tuple.  Waiting observers then get them.
        """
        with self.__cond:
            if self.__ended is not None:
                return
            for index, value in zip(indices, values, strict=True):
                if self.__base <= index < self.__first and index not in self.__returned:
                    self.__restore(index)
                    self.__journal("unobserve", index)
                else:
                    self.__append(value)
            self.__monitor.changed()
            self.__settle()

    def taken_last(self) -> int | None:
        """The index the latest unindexed observe took (hold :attr:`lock` to know it was yours)."""
        with self.__cond:
            return self.__recent

    def unobserve(self, index: int) -> bool:
        """Make tuple ``index``, which an unindexed observe just took, unobserved again at its own index.

        For a reply that cannot be sent (an X-function's value the wire cannot
        carry): the tuple stays where it was instead of being lost.  False if it
        cannot be put back (freed by axe, never taken, or the element ended).
        """
        with self.__cond:
            if self.__ended is not None or not self.__base <= index < self.__first or index in self.__returned:
                return False
            self.__restore(index)
            self.__journal("unobserve", index)
            self.__monitor.changed()
            self.__settle()
            return True

    # ------------------------------------------------------------ operations
    def move(self, data: Any) -> None:
        """Append ``data`` at index ``last``; block while delta leaves no room.

        Blocked moves complete strictly in the order they blocked: whoever makes
        room (an observe, a larger delta) appends the waiting tuples in turn.
        """
        with self.__cond:
            self.__check()
            if not self.__movers and self.__room():  # the common case, without a waiter
                self.__append(data)
                self.__settle()
                return
            self.__block(Waiter("move", data=[data]))

    def observe(self, index: int = -1) -> Any:
        """Return a tuple.

        Unindexed (``index < 0``): the oldest unobserved tuple, taken
        atomically, so that each tuple goes to exactly one observer; blocks while
        there is none.  Indexed: tuple ``index`` without touching ``first``;
        blocks until it exists, raises ExpiredError if ``axe`` freed it.
        """
        index = check_index(index)
        with self.__cond:
            self.__check()
            if index < 0:
                return self.__block(Waiter("observe"))
            if index < self.__base:
                raise self.__expired(index)
            if index < self.__last:
                return self.__data[index - self.__base]
            return self.__block(Waiter("observe", index=index))

    def move_many(self, tuples: list[Any]) -> None:
        """Move each of ``tuples`` in order, as that many moves would (delta applies to each)."""
        with self.__cond:
            self.__check()
            if tuples:
                self.__block(Waiter("move", data=list(tuples)))

    def observe_many(self, count: int) -> list[Any]:
        """Take up to ``count`` unobserved tuples at once, oldest first.

        Blocks until at least one is there; every tuple still goes to exactly
        one observer.  The batch form of an unindexed observe.
        """
        count = check_index(count)
        if count < 1:
            raise PastSetValueError(f"observe_many needs a count of at least 1, got {count}")
        with self.__cond:
            self.__check()
            result: list[Any] = self.__block(Waiter("observe_many", count=count))
            return result

    def first(self) -> int:
        """Index of the oldest tuple not yet observed without an index."""
        with self.__cond:
            self.__check()
            return self.__lowest()

    def last(self) -> int:
        """Number of tuples moved so far: the index the next move gets."""
        with self.__cond:
            self.__check()
            return self.__last

    def delta(self, value: int | None = None) -> int | None:
        """Read delta, or set it and return it.

        Delta bounds the unobserved tuples; None, 0 or a negative value mean
        unbounded.  Raising it releases blocked moves in the order they blocked.
        """
        value = check_delta(value)
        with self.__cond:
            self.__check()
            if value is not None:
                self.__delta = value
                self.__journal("delta", value)
                self.__monitor.changed()
                self.__settle()
            return self.__delta

    def axe(self, index: int) -> None:
        """Allow tuples with an index below ``index`` to be freed.

        Tuples not yet observed (index >= first) are never freed.  An indexed
        observe of a freed tuple raises ExpiredError.
        """
        index = check_index(index)
        with self.__cond:
            self.__check()
            upto = min(index, self.__lowest())
            if upto > self.__base:
                del self.__data[: upto - self.__base]
                self.__base = upto
                self.__journal("axe", index)

    def template(self) -> tuple:
        """The template this element was entered with.

        Takes no lock (the template never changes), so it never waits for a
        long X-function call on the element.
        """
        self.__check()
        return self.__template

    # ----------------------------------------------------- server-side extras
    def stored(self) -> int:
        """How many tuples are held in memory now."""
        with self.__cond:
            return len(self.__data)

    def requeue(self, data: Any) -> None:
        """Append ``data`` again at once, whatever delta says (a lease handed back).

        Used when an observer of a leased element dies before acknowledging: its
        tuple goes to the next observer as a new tuple at index ``last``.
        """
        with self.__cond:
            self.__check()
            self.__append(data)
            self.__settle()

    def pause(self, paused: bool = True) -> None:
        """Hold (or release) unindexed observes; moves and indexed observes go on."""
        with self.__cond:
            self.__paused = paused
            self.__monitor.changed()
            if not paused and self.__ended is None:
                self.__settle()

    def end(self, error: BaseException) -> None:
        """Make this and every later or blocked operation raise ``error``.

        Used for ``delelement`` (ElementDeletedError) and the end of a run.  The
        first reason wins; the stored tuples are released.
        """
        with self.__cond:
            if self.__ended is None:
                self.__ended = error
                self.__data = []
                self.__returned = []
                self.__base = self.__last
                self.__first = self.__last
                queued = [*self.__movers, *self.__observers]
                for waiters in self.__indexed.values():
                    queued.extend(waiters)
                self.__movers.clear()
                self.__observers.clear()
                self.__indexed.clear()
                for waiter in queued:
                    if not waiter.cancelled and not waiter.done:
                        self.__complete(waiter, None, _fresh(error))
                self.__monitor.changed()
            self.__cond.notify_all()

    def has_ready_waiter(self) -> bool:
        """True if some blocked call could go on now (used to detect a quiet run)."""
        with self.__cond:
            observers = self.__live(self.__observers)
            if self.__ended is not None:
                return bool(observers or self.__live(self.__movers) or self.__indexed)
            if observers and self.__unobserved() and not self.__paused:
                return True
            if self.__live(self.__movers) and self.__room():
                return True
            return any(i < self.__last for i in self.__indexed)

    def queued(self) -> int:
        """How many operations wait on this element now."""
        with self.__cond:
            count = sum(1 for w in self.__movers if not w.cancelled)
            count += sum(1 for w in self.__observers if not w.cancelled)
            return count + sum(len(ws) for ws in self.__indexed.values())

    # --------------------------------------------------------------- helpers
    def __check(self) -> None:
        if self.__ended is not None:
            raise _fresh(self.__ended)

    def __expired(self, index: int) -> ExpiredError:
        return ExpiredError(
            f"tuple {index} of element {self.__template!r} was freed by axe; "
            f"the oldest tuple still stored is {self.__base}"
        )

    def __lowest(self) -> int:
        return self.__returned[0] if self.__returned else self.__first

    def __unobserved(self) -> int:
        return self.__last - self.__first + len(self.__returned)

    def __room(self) -> bool:
        return not self.__delta or self.__delta <= 0 or self.__unobserved() < self.__delta

    def __restore(self, index: int) -> None:
        if self.__base <= index < self.__first and index not in self.__returned:
            bisect.insort(self.__returned, index)

    def __take(self, count: int, journal: bool = True) -> tuple[list[int], list[Any]]:
        """The ``count`` (at most) lowest unobserved indices and their tuples, now observed."""
        taken: list[int] = []
        returned = self.__returned
        while returned and len(taken) < count:
            taken.append(returned.pop(0))
        more = min(count - len(taken), self.__last - self.__first)
        if more > 0:
            taken.extend(range(self.__first, self.__first + more))
            self.__first += more
        if taken:
            self.__recent = taken[-1]
        if journal:
            if len(taken) == 1:
                self.__journal("observe")
            else:
                self.__journal("observe", len(taken))
        base, data = self.__base, self.__data
        return taken, [data[i - base] for i in taken]

    def __append(self, data: Any) -> None:
        self.__journal("move", data)
        self.__data.append(data)
        self.__last += 1
        self.__monitor.changed()
        if self.__indexed:
            waiters = self.__indexed.pop(self.__last - 1, None)
            if waiters:
                for waiter in waiters:
                    self.__complete(waiter, data)

    def __serve(self, waiter: Waiter) -> None:
        """Give an unindexed observer its tuple(s) (there is at least one unobserved)."""
        indices, values = self.__take(waiter.count)
        waiter.taken = indices
        waiter.result = values[0] if waiter.op == "observe" else values
        waiter.done = True
        self.__monitor.changed()

    def __settle(self) -> None:
        """Complete every queued waiter that can go on now, in the order they queued."""
        movers, observers = self.__movers, self.__observers
        progress = True
        while progress:
            progress = False
            while movers and self.__room():
                waiter = movers[0]
                if waiter.cancelled:
                    movers.popleft()
                    self.__stale -= 1
                    continue
                data = waiter.data
                assert data is not None
                self.__append(data.pop(0))
                progress = True
                if not data:
                    movers.popleft()
                    self.__complete(waiter, None)
            while observers and not self.__paused and self.__unobserved():
                waiter = observers.popleft()
                if waiter.cancelled:
                    self.__stale -= 1
                    continue
                if waiter.alive is not None and not waiter.alive():
                    waiter.cancelled = True
                    self.__waiting(-1, waiter)
                    continue
                self.__serve(waiter)
                self.__finish(waiter)
                progress = True

    def __enqueue(self, waiter: Waiter, queue: Any) -> None:
        if not waiter.since:
            waiter.since = time.time()
        queue.append(waiter)
        self.__waiting(1, waiter)

    def __drop(self, waiter: Waiter) -> None:
        waiter.cancelled = True
        if waiter.op == "observe" and waiter.index >= 0:
            waiters = self.__indexed.get(waiter.index)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self.__indexed[waiter.index]
        else:
            self.__stale += 1
            if self.__stale > 64:
                self.__compact()
        self.__waiting(-1, waiter)

    def __compact(self) -> None:
        """Drop cancelled waiters from the queues once they are many (cancel is lazy there)."""
        total = len(self.__movers) + len(self.__observers)
        if self.__stale * 2 < total:
            return
        self.__movers = collections.deque(w for w in self.__movers if not w.cancelled)
        self.__observers = collections.deque(w for w in self.__observers if not w.cancelled)
        self.__stale = 0

    def __complete(self, waiter: Waiter, result: Any, error: BaseException | None = None) -> None:
        waiter.result = result
        waiter.error = error
        waiter.done = True
        self.__finish(waiter)

    def __finish(self, waiter: Waiter) -> None:
        self.__waiting(-1, waiter)
        if waiter.notify is not None:
            waiter.notify(waiter)
        else:
            self.__cond.notify_all()

    def __live(self, queue: collections.deque[Waiter]) -> bool:
        """True if ``queue`` holds a waiter that was not cancelled."""
        if not queue:
            return False
        if len(queue) > self.__stale:
            return True
        return any(not w.cancelled for w in queue)

    def __block(self, waiter: Waiter) -> Any:
        """Run ``waiter`` in the calling thread: submit it, then wait for it (under the held lock)."""
        until = getattr(_limits, "until", None)
        waiter.caller = getattr(_limits, "caller", None)
        if until is not None:
            waiter.timeout = max(0.0, until - time.monotonic())
        if not self.submit(waiter):
            try:
                while not waiter.done:
                    if until is None:
                        self.__cond.wait()
                        continue
                    remaining = until - time.monotonic()
                    if (remaining <= 0 or not self.__cond.wait(remaining)) and not waiter.done:
                        self.cancel(waiter)
                        raise PastSetTimeoutError(f"operation on element {self.__template!r} did not complete in time")
            except BaseException:
                if not waiter.done:
                    self.cancel(waiter)
                raise
        if waiter.error is not None:
            raise waiter.error
        return waiter.result


def _count_only(monitor: Monitor) -> Callable[[int, Waiter], None]:
    return lambda step, waiter: monitor.waiting(step)


def _fresh(error: BaseException) -> BaseException:
    """A new exception like ``error``, so each raiser gets its own traceback."""
    try:
        return type(error)(*error.args)
    except Exception:  # pragma: no cover - exotic exception signature
        return error


def deleted_error(template: tuple) -> ElementDeletedError:
    """The error every operation on a deleted element raises."""
    return ElementDeletedError(
        f"element {template!r} was deleted; enter the template again to get a new, empty element"
    )
