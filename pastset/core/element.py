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

import collections
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from pastset.errors import (
    ElementDeletedError,
    ExpiredError,
    PastSetTimeoutError,
    PastSetTypeError,
    PastSetValueError,
)

__all__ = ["Element", "Monitor", "check_delta", "check_index", "check_template", "check_timeout", "deadline"]

_limits = threading.local()


class deadline:  # noqa: N801 - a context manager used like a function
    """Bound every wait of the current thread inside element operations.

    The server wraps a call in ``with deadline(timeout):`` so that X-function
    overrides, whose signatures have no timeout, are bounded too.  ``None`` means
    wait as long as it takes.
    """

    def __init__(self, timeout: float | None) -> None:
        timeout = check_timeout(timeout)
        self._until = None if timeout is None else time.monotonic() + max(0.0, timeout)
        self._saved: float | None = None

    def __enter__(self) -> None:
        self._saved = getattr(_limits, "until", None)
        _limits.until = self._until

    def __exit__(self, *exc: object) -> None:
        _limits.until = self._saved


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


class _Ticket:
    """A blocked move waiting for room; completed by whoever makes the room."""

    __slots__ = ("data", "done")

    def __init__(self, data: Any) -> None:
        self.data = data
        self.done = False


def check_template(template: object) -> tuple:
    """Return ``template`` if it can name an element, else raise PastSetTypeError.

    A template is a tuple of types and constants; constants must be hashable
    because equal templates must find the same element.
    """
    if not isinstance(template, tuple):
        raise PastSetTypeError(
            f"a template must be a tuple such as ('name', int, float), got {type(template).__name__}"
        )
    for i, part in enumerate(template):
        if not isinstance(part, Hashable) or isinstance(part, (list, dict, set)):
            raise PastSetTypeError(
                f"template position {i} holds a {type(part).__name__}, which cannot name an element; "
                "use types and hashable constants (str, int, tuple, ...)"
            )
        if _has_nan(part):
            raise PastSetValueError(
                f"template position {i} holds NaN ({part!r}), which is never equal to itself, so no two "
                "enters would find the same element; use a type (float) or another constant"
            )
    return template


def _has_nan(part: object) -> bool:
    """True if a template constant is or holds a NaN (which equals nothing, itself included)."""
    if isinstance(part, float):
        return part != part
    if isinstance(part, complex):
        return part != part
    if isinstance(part, (tuple, frozenset)):
        return any(_has_nan(x) for x in part)
    return False


#: Longest timeout a wait can take (the platform's limit for a lock's wait).
TIMEOUT_MAX = threading.TIMEOUT_MAX


def check_timeout(timeout: object) -> float | None:
    """Return a timeout as float seconds or None; PastSetTypeError/PastSetValueError for anything else."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise PastSetTypeError(f"timeout must be a number of seconds or None, got {type(timeout).__name__}")
    try:
        seconds = float(timeout)
    except OverflowError:
        seconds = float("inf")
    if seconds != seconds or seconds > TIMEOUT_MAX:
        raise PastSetValueError(
            f"timeout must be a finite number of seconds up to {TIMEOUT_MAX:.0f}, or None to wait as long as it "
            f"takes; got {timeout!r:.40}"
        )
    return seconds


def template_key(template: tuple) -> tuple:
    """A key under which equal templates meet and ``1`` differs from ``True`` and ``1.0``."""
    return tuple((part.__class__, part) for part in template)


def check_index(index: object) -> int:
    """Return ``index`` as an int, or raise PastSetTypeError for a non-integer."""
    if isinstance(index, bool) or not isinstance(index, int):
        try:
            import numbers

            if isinstance(index, numbers.Integral) and not isinstance(index, bool):
                return int(index)
        except ImportError:  # pragma: no cover
            pass
        raise PastSetTypeError(
            f"an index must be an integer (or negative for the next unobserved tuple), "
            f"got {type(index).__name__} {index!r}"
        )
    return index


def check_delta(value: object) -> int | None:
    """Return a delta as int or None; raise PastSetTypeError for non-numbers."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PastSetTypeError(
            f"delta must be a number (0 or negative for unbounded), got {type(value).__name__} {value!r}"
        )
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise PastSetValueError(f"delta must be finite, got {value!r}")
        if not value.is_integer():
            raise PastSetValueError(f"delta counts tuples and must be whole, got {value!r}")
    return int(value)


class Element:
    """The ordered log of all tuples moved under one template.

    Indices are 0, 1, 2, ... in the order moves completed and are never reused.
    ``first`` is the oldest tuple not yet observed without an index; ``last`` is
    the index the next move gets.  See SEMANTICS.md for the full contract.
    """

    def __init__(self, template: tuple) -> None:
        self.__template = template
        self.__cond = threading.Condition(threading.RLock())
        self.__data: list[Any] = []  # tuple i lives at __data[i - __base]
        self.__base = 0  # indices below this were freed by axe
        self.__first = 0
        self.__last = 0
        self.__delta: int | None = None
        self.__movers: collections.deque[_Ticket] = collections.deque()
        self.__handed = 0  # moves completed for a blocked mover that has not woken yet
        self.__observers = 0  # threads blocked in an unindexed observe
        self.__indexed: collections.Counter[int] = collections.Counter()
        self.__ended: BaseException | None = None
        self.__monitor: Monitor = _NO_MONITOR
        self.__journal: Callable[..., None] = _no_journal
        self.__paused = False

    # ----------------------------------------------------------------- hooks
    @property
    def lock(self) -> threading.RLock:
        """The element's re-entrant lock; hold it to make several calls atomic."""
        return self.__cond  # type: ignore[return-value]

    def attach(self, monitor: Monitor, journal: Callable[..., None] | None = None) -> None:
        """Report waits and changes to ``monitor``, and record changes with ``journal``."""
        self.__monitor = monitor
        self.__journal = journal or _no_journal

    def replay(self, kind: str, *args: Any) -> None:
        """Re-apply one journal record, without blocking or journaling (recovery)."""
        with self.__cond:
            if kind == "move":
                self.__data.append(args[0])
                self.__last += 1
            elif kind == "observe":
                self.__first += args[0] if args else 1
            elif kind == "unobserve" and self.__first == args[0] + 1:
                self.__first = args[0]
            elif kind == "delta":
                self.__delta = args[0]
            elif kind == "axe":
                upto = min(args[0], self.__first)
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

    def unobserve(self, index: int) -> bool:
        """Make tuple ``index`` the next to observe again, if it is the one an unindexed observe just took.

        For a reply that cannot be sent (an X-function's value the wire cannot
        carry): the tuple stays where it was instead of being lost.  False if
        someone observed after it (then nothing changes).
        """
        with self.__cond:
            if self.__ended is not None or index < self.__base or self.__first != index + 1:
                return False
            self.__first = index
            self.__journal("unobserve", index)
            self.__monitor.changed()
            self.__cond.notify_all()
            return True

    def __set_entry(self, index: int, data: Any) -> None:
        # pyPastSet's private hook; subclasses named Element reach it by name mangling.
        self.set_entry(index, data)

    def would_wait(self, moves: int = 0, index: int = -1) -> bool:
        """True if an operation would block now: a move of ``moves`` tuples, else an observe of ``index``.

        A negative ``index`` is an unindexed observe.  The answer holds only
        while :attr:`lock` is held: the server checks and then acts under it, so
        that what it runs in its event loop never waits.
        """
        with self.__cond:
            if self.__ended is not None:
                return False  # the operation raises at once
            if moves:
                if self.__movers:
                    return True  # blocked moves go first
                return bool(self.__delta and self.__delta > 0 and self.__last - self.__first + moves > self.__delta)
            if index < 0:
                return self.__first >= self.__last or self.__paused
            return index >= self.__last

    # ------------------------------------------------------------ operations
    def move(self, data: Any) -> None:
        """Append ``data`` at index ``last``; block while delta leaves no room.

        Blocked moves complete strictly in the order they blocked: whoever makes
        room (an observe, a larger delta) appends the waiting tuples in turn.
        """
        with self.__cond:
            self.__check()
            if not self.__movers and self.__room():
                self.__append(data)
                self.__cond.notify_all()
                return
            ticket = _Ticket(data)
            self.__movers.append(ticket)
            try:
                self.__wait(lambda: ticket.done)
            finally:
                if ticket.done:
                    self.__handed -= 1
                elif ticket in self.__movers:
                    self.__movers.remove(ticket)

    def observe(self, index: int = -1) -> Any:
        """Return a tuple.

        Unindexed (``index < 0``): the tuple at ``first``, advancing ``first``
        atomically, so that each tuple goes to exactly one observer; blocks while
        there is none.  Indexed: tuple ``index`` without touching ``first``;
        blocks until it exists, raises ExpiredError if ``axe`` freed it.
        """
        index = check_index(index)
        with self.__cond:
            self.__check()
            if index < 0:
                if self.__first >= self.__last or self.__paused:
                    self.__observers += 1
                    try:
                        self.__wait(lambda: self.__first < self.__last and not self.__paused)
                    finally:
                        self.__observers -= 1
                    self.__check()
                index = self.__first
                result = self.__data[index - self.__base]
                self.__first = index + 1
                self.__journal("observe")
                self.__drain()
                self.__monitor.changed()
                self.__cond.notify_all()
                return result
            if index < self.__base:
                raise self.__expired(index)
            if index >= self.__last:
                self.__indexed[index] += 1
                try:
                    self.__wait(lambda: index < self.__last)
                finally:
                    self.__indexed[index] -= 1
                    if not self.__indexed[index]:
                        del self.__indexed[index]
                self.__check()
                if index < self.__base:
                    raise self.__expired(index)
            return self.__data[index - self.__base]

    def move_many(self, tuples: list[Any]) -> None:
        """Move each of ``tuples`` in order, as that many moves would (delta applies to each)."""
        with self.__cond:
            for data in tuples:
                self.move(data)

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
            if self.__first >= self.__last or self.__paused:
                self.__observers += 1
                try:
                    self.__wait(lambda: self.__first < self.__last and not self.__paused)
                finally:
                    self.__observers -= 1
                self.__check()
            taken = min(count, self.__last - self.__first)
            start = self.__first - self.__base
            result = self.__data[start : start + taken]
            self.__first += taken
            self.__journal("observe", taken)
            self.__drain()
            self.__monitor.changed()
            self.__cond.notify_all()
            return result

    def first(self) -> int:
        """Index of the oldest tuple not yet observed without an index."""
        with self.__cond:
            self.__check()
            return self.__first

    def last(self) -> int:
        """Number of tuples moved so far: the index the next move gets."""
        with self.__cond:
            self.__check()
            return self.__last

    def delta(self, value: int | None = None) -> int | None:
        """Read delta, or set it and return it.

        Delta bounds the unobserved tuples (``last - first``); None, 0 or a
        negative value mean unbounded.  Raising it releases blocked moves in the
        order they blocked.
        """
        value = check_delta(value)
        with self.__cond:
            self.__check()
            if value is not None:
                self.__delta = value
                self.__journal("delta", value)
                self.__drain()
                self.__monitor.changed()
                self.__cond.notify_all()
            return self.__delta

    def axe(self, index: int) -> None:
        """Allow tuples with an index below ``index`` to be freed.

        Tuples not yet observed (index >= first) are never freed.  An indexed
        observe of a freed tuple raises ExpiredError.
        """
        index = check_index(index)
        with self.__cond:
            self.__check()
            upto = min(index, self.__first)
            if upto > self.__base:
                del self.__data[: upto - self.__base]
                self.__base = upto
                self.__journal("axe", index)

    def template(self) -> tuple:
        """The template this element was entered with."""
        with self.__cond:
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
            self.__cond.notify_all()

    def pause(self, paused: bool = True) -> None:
        """Hold (or release) unindexed observes; moves and indexed observes go on."""
        with self.__cond:
            self.__paused = paused
            self.__monitor.changed()
            self.__cond.notify_all()

    def end(self, error: BaseException) -> None:
        """Make this and every later or blocked operation raise ``error``.

        Used for ``delelement`` (ElementDeletedError) and the end of a run.  The
        first reason wins; the stored tuples are released.
        """
        with self.__cond:
            if self.__ended is None:
                self.__ended = error
                self.__data = []
                self.__base = self.__last
                self.__movers.clear()
                self.__monitor.changed()
            self.__cond.notify_all()

    def has_ready_waiter(self) -> bool:
        """True if some blocked call could go on now (used to detect a quiet run)."""
        with self.__cond:
            if self.__handed:
                return True
            if self.__ended is not None:
                return bool(self.__observers or self.__indexed or self.__movers)
            if self.__observers and self.__first < self.__last and not self.__paused:
                return True
            return any(i < self.__last for i in self.__indexed)

    # --------------------------------------------------------------- helpers
    def __check(self) -> None:
        if self.__ended is not None:
            raise _fresh(self.__ended)

    def __expired(self, index: int) -> ExpiredError:
        return ExpiredError(
            f"tuple {index} of element {self.__template!r} was freed by axe; "
            f"the oldest tuple still stored is {self.__base}"
        )

    def __room(self) -> bool:
        return not self.__delta or self.__delta <= 0 or self.__last - self.__first < self.__delta

    def __append(self, data: Any) -> None:
        self.__journal("move", data)
        self.__data.append(data)
        self.__last += 1
        self.__monitor.changed()

    def __drain(self) -> None:
        while self.__movers and self.__room():
            ticket = self.__movers.popleft()
            self.__append(ticket.data)
            ticket.data = None
            ticket.done = True
            self.__handed += 1

    def __wait(self, ready: Callable[[], bool]) -> None:
        until = getattr(_limits, "until", None)
        self.__monitor.waiting(1)
        try:
            while not ready():
                if self.__ended is not None:
                    raise _fresh(self.__ended)
                if until is None:
                    self.__cond.wait()
                else:
                    remaining = until - time.monotonic()
                    if remaining <= 0 or not self.__cond.wait(remaining):
                        if ready():
                            break
                        raise PastSetTimeoutError(f"operation on element {self.__template!r} did not complete in time")
        finally:
            self.__monitor.waiting(-1)


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
