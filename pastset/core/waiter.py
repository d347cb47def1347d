"""The waiters of an element and the per-thread context of element operations.

A :class:`Waiter` is one operation queued on an element until it can complete;
the server's event loop queues them without a thread, the blocking element
methods queue one and wait for it.  :class:`deadline` and :class:`calling` bound
and name the blocking operations of the current thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pastset.core.checks import check_timeout

__all__ = ["Waiter", "calling", "current_caller", "deadline"]

_limits = threading.local()


class deadline:  # noqa: N801 - a context manager used like a function
    """Bound every wait of the current thread inside element operations.

    The server wraps a call in ``with deadline(timeout):`` so that X-function
    overrides, whose signatures have no timeout, are bounded too.  ``None`` means
    wait as long as it takes.
    """

    def __init__(self, timeout: float | None) -> None:
        timeout = check_timeout(timeout)  # a peer that skipped the client's check gets the same error
        self._until = None if timeout is None else time.monotonic() + max(0.0, timeout)
        self._saved: float | None = None

    def __enter__(self) -> None:
        self._saved = getattr(_limits, "until", None)
        _limits.until = self._until

    def __exit__(self, *exc: object) -> None:
        _limits.until = self._saved


class Waiter:
    """One operation queued on an element until it can complete; it needs no thread.

    ``op`` is "move" (``data``: the tuples to append, in order), "observe"
    (``index`` < 0 for an unindexed observe) or "observe_many" (up to
    ``count`` tuples).  When it completes, under the element's lock, ``result``
    or ``error`` is set, ``done`` becomes True and ``notify(waiter)`` is called
    (a thread waiter, with no ``notify``, is woken through the element's
    condition).  ``taken`` lists the indices an unindexed observe took, so that
    a reply that never reached its caller can give them back
    (:meth:`Element.give_back`).  ``alive()``, if given, is asked just before
    tuples are taken for the waiter: False means its connection is gone, and
    the waiter is cancelled instead, so a tuple only goes to a live caller.
    """

    __slots__ = (
        "alive",
        "caller",
        "cancelled",
        "count",
        "data",
        "done",
        "error",
        "index",
        "key",
        "notify",
        "op",
        "result",
        "since",
        "taken",
        "task",
        "timeout",
    )

    def __init__(
        self,
        op: str,
        *,
        index: int = -1,
        count: int = 1,
        data: list[Any] | None = None,
        caller: Any = None,
        timeout: float | None = None,
        notify: Callable[[Waiter], None] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.op = op
        self.index = index
        self.count = count
        self.data = data
        self.caller = caller
        self.timeout = timeout
        self.notify = notify
        self.alive = alive
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.cancelled = False
        self.taken: list[int] = []
        self.since = 0.0
        self.key: Any = None  # the space's registry key while it waits
        self.task: str | None = None

    @property
    def template(self) -> tuple:
        """What the waiter asked for, for views: (op, index or count)."""
        return (self.op, self.count if self.op == "observe_many" else self.index)


class calling:  # noqa: N801 - a context manager used like a function
    """Name the caller (a :class:`pastset.core.waits.Caller`) of the current thread's element operations.

    A blocked operation records it, so the space knows who waits on what.
    """

    def __init__(self, caller: Any) -> None:
        self._caller = caller
        self._saved: Any = None

    def __enter__(self) -> None:
        self._saved = getattr(_limits, "caller", None)
        _limits.caller = self._caller

    def __exit__(self, *exc: object) -> None:
        _limits.caller = self._saved


def current_caller() -> Any:
    """The caller named by :class:`calling` for this thread, or None."""
    return getattr(_limits, "caller", None)
