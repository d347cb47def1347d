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

The machinery the element drives under its lock lives apart, so that this
module reads as the element's contract: the stored tuples, their indices and
delta (:class:`pastset.core.tuples.TupleLog`), the FIFO queues of blocked
operations and how they settle (:class:`pastset.core.queues.WaiterQueues`),
and what the element reports to (:class:`pastset.core.monitor.Monitor`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pastset.core.checks import check_delta, check_index, check_template, check_timeout, template_key
from pastset.core.monitor import NO_MONITOR, Monitor, no_journal, waiting_hook
from pastset.core.queues import WaiterQueues
from pastset.core.tuples import TupleLog
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


class Element:
    """The ordered log of all tuples moved under one template.

    Indices are 0, 1, 2, ... in the order moves completed and are never reused.
    ``first`` is the oldest tuple not yet observed without an index; ``last`` is
    the index the next move gets.  See SEMANTICS.md for the full contract.

    Every operation that cannot complete at once is a :class:`Waiter` in one
    of the element's FIFO queues (blocked moves, unindexed observers, indexed
    observers by index: :class:`~pastset.core.queues.WaiterQueues`); whoever
    changes the state completes the waiters that became ready, in the order
    they queued.  :meth:`submit` and :meth:`cancel`
    are the non-blocking interface the server's event loop uses; the blocking
    methods (:meth:`move`, :meth:`observe`, ...) queue a waiter the same way and
    wait on the element's condition for it.
    """

    def __init__(self, template: tuple) -> None:
        self.__template = template
        self.__cond = threading.Condition(threading.RLock())
        self.__log = TupleLog()  # the stored tuples, which are observed, and delta
        self.__ended: BaseException | None = None
        self.__monitor: Monitor = NO_MONITOR
        self.__journal: Callable[..., None] = no_journal
        self.__queues = WaiterQueues(self.__cond, self.__log, NO_MONITOR, no_journal, waiting_hook(NO_MONITOR, self))
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
        self.__journal = journal or no_journal
        self.eid = eid
        queues = self.__queues  # the queues report to the same monitor and journal
        queues.monitor, queues.journal, queues.waiting = monitor, self.__journal, waiting_hook(monitor, self)

    def replay(self, kind: str, *args: Any) -> None:
        """Re-apply one journal record, without blocking or journaling (recovery)."""
        with self.__cond:
            self.__log.replay(kind, *args)

    def set_entry(self, index: int, data: Any) -> None:
        """Replace the stored tuple ``index`` (an X-out may annotate what it returned)."""
        with self.__cond:
            self.__check()
            log = self.__log
            if index < log.base:
                raise ExpiredError(f"tuple {index} was freed by axe and cannot be replaced")
            if index >= log.last:
                raise PastSetValueError(
                    f"set_entry({index}) is beyond the last stored tuple ({log.last - 1}); "
                    "new tuples are added with move"
                )
            log.replace(index, data)
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
                if self.__queues.live(self.__queues.movers):
                    return True  # blocked moves go first
                delta = self.__log.delta
                return bool(delta and delta > 0 and self.__log.unobserved() + moves > delta)
            if index < 0:
                return not self.__log.unobserved() or self.__queues.paused
            return index >= self.__log.last

    # ------------------------------------------------- non-blocking interface
    def submit(self, waiter: Waiter) -> bool:
        """Run ``waiter``'s operation now if it can complete (True), else queue it (False).

        Raises at once what the operation raises at once (a deleted element, an
        expired index).  A queued waiter completes later, under the lock of
        whoever makes it ready, and is told through ``waiter.notify``.
        """
        with self.__cond:
            self.__check()
            if waiter.op == "observe" and 0 <= waiter.index < self.__log.base:
                raise self.__expired(waiter.index)
            return self.__queues.submit(waiter)

    def move_now(self, data: Any) -> bool:
        """Move ``data`` if that completes at once (True); False if it would wait or raise.

        The server's event loop tries this first, so the common move costs no
        waiter; on False it submits a waiter, which also raises what must be raised.
        """
        with self.__cond:
            return self.__ended is None and self.__queues.move_now(data)

    def take_now(self) -> tuple[int, Any] | None:
        """Take the oldest unobserved tuple as ``(index, tuple)`` if an unindexed observe completes at once.

        None if it would wait or raise (see :meth:`move_now`).  The index is what
        :meth:`give_back` takes if the reply never reaches the caller.
        """
        with self.__cond:
            return None if self.__ended is not None else self.__queues.take_now()

    def cancel(self, waiter: Waiter) -> bool:
        """Take a queued waiter out (its caller left or gave up); False if it had completed already."""
        with self.__cond:
            if waiter.done or waiter.cancelled:
                return False
            self.__queues.drop(waiter)
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
                if self.__log.restore(index):
                    self.__journal("unobserve", index)
                else:
                    self.__queues.append(value)
            self.__monitor.changed()
            self.__queues.settle()

    def taken_last(self) -> int | None:
        """The index the latest unindexed observe took (hold :attr:`lock` to know it was yours)."""
        with self.__cond:
            return self.__log.recent

    def unobserve(self, index: int) -> bool:
        """Make tuple ``index``, which an unindexed observe just took, unobserved again at its own index.

        For a reply that cannot be sent (an X-function's value the wire cannot
        carry): the tuple stays where it was instead of being lost.  False if it
        cannot be put back (freed by axe, never taken, or the element ended).
        """
        with self.__cond:
            if self.__ended is not None or not self.__log.restore(index):
                return False
            self.__journal("unobserve", index)
            self.__monitor.changed()
            self.__queues.settle()
            return True

    # ------------------------------------------------------------ operations
    def move(self, data: Any) -> None:
        """Append ``data`` at index ``last``; block while delta leaves no room.

        Blocked moves complete strictly in the order they blocked: whoever makes
        room (an observe, a larger delta) appends the waiting tuples in turn.
        """
        with self.__cond:
            self.__check()
            if not self.__queues.move_now(data):  # the common case needs no waiter
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
            if index < self.__log.base:
                raise self.__expired(index)
            if index < self.__log.last:
                return self.__log.get(index)
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
            return self.__log.lowest()

    def last(self) -> int:
        """Number of tuples moved so far: the index the next move gets."""
        with self.__cond:
            self.__check()
            return self.__log.last

    def delta(self, value: int | None = None) -> int | None:
        """Read delta, or set it and return it.

        Delta bounds the unobserved tuples; None, 0 or a negative value mean
        unbounded.  Raising it releases blocked moves in the order they blocked.
        """
        value = check_delta(value)
        with self.__cond:
            self.__check()
            if value is not None:
                self.__log.delta = value
                self.__journal("delta", value)
                self.__monitor.changed()
                self.__queues.settle()
            return self.__log.delta

    def axe(self, index: int) -> None:
        """Allow tuples with an index below ``index`` to be freed.

        Tuples not yet observed (index >= first) are never freed.  An indexed
        observe of a freed tuple raises ExpiredError.
        """
        index = check_index(index)
        with self.__cond:
            self.__check()
            if self.__log.free(index):
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
            return len(self.__log.data)

    def requeue(self, data: Any) -> None:
        """Append ``data`` again at once, whatever delta says (a lease handed back).

        Used when an observer of a leased element dies before acknowledging: its
        tuple goes to the next observer as a new tuple at index ``last``.
        """
        with self.__cond:
            self.__check()
            self.__queues.append(data)
            self.__queues.settle()

    def pause(self, paused: bool = True) -> None:
        """Hold (or release) unindexed observes; moves and indexed observes go on."""
        with self.__cond:
            self.__queues.paused = paused
            self.__monitor.changed()
            if not paused and self.__ended is None:
                self.__queues.settle()

    def end(self, error: BaseException) -> None:
        """Make this and every later or blocked operation raise ``error``.

        Used for ``delelement`` (ElementDeletedError) and the end of a run.  The
        first reason wins; the stored tuples are released.
        """
        with self.__cond:
            if self.__ended is None:
                self.__ended = error
                self.__log.clear()
                self.__queues.fail_all(lambda: _fresh(error))
                self.__monitor.changed()
            self.__cond.notify_all()

    def has_ready_waiter(self) -> bool:
        """True if some blocked call could go on now (used to detect a quiet run)."""
        with self.__cond:
            return self.__queues.has_ready(self.__ended is not None)

    def queued(self) -> int:
        """How many operations wait on this element now."""
        with self.__cond:
            return self.__queues.count()

    # --------------------------------------------------------------- helpers
    def __check(self) -> None:
        if self.__ended is not None:
            raise _fresh(self.__ended)

    def __expired(self, index: int) -> ExpiredError:
        return ExpiredError(
            f"tuple {index} of element {self.__template!r} was freed by axe; "
            f"the oldest tuple still stored is {self.__log.base}"
        )

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
