"""What an element reports to the run: the :class:`Monitor` protocol.

An element tells its monitor (the space) which operations start and stop
waiting and that its state changed, so that the run can tell when it has gone
quiet and show who waits on what.  Both the element and its waiter queues
report to it, so the protocol, the no-op monitor and journal an element has
until it is attached, and the adapter from a monitor to the queues' hook live
here, below both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pastset.core.waiter import Waiter

__all__ = ["NO_MONITOR", "Monitor", "no_journal", "waiting_hook"]


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


#: the monitor of an element that was never attached
NO_MONITOR: Monitor = _NoMonitor()


def no_journal(*record: Any) -> None:
    """The journal of an element that was never attached: records nothing."""


def waiting_hook(monitor: Monitor, element: object) -> Callable[[int, Waiter], None]:
    """How ``element``'s waiter queues tell ``monitor`` that a waiter starts (+1) or stops (-1) waiting.

    A monitor with a ``waiting_for(step, waiter, element)`` method learns which
    waiter it is; otherwise ``waiting(step)`` counts them.
    """
    rich = getattr(monitor, "waiting_for", None)
    if rich is not None:
        return lambda step, waiter: rich(step, waiter, element)
    return lambda step, waiter: monitor.waiting(step)
