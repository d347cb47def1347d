"""What the channel's event loop and the space it serves say to each other.

The loop (:mod:`pastset.transport.channel_server`) starts each request with
:meth:`Service.start`, which answers now (:class:`Reply`), queues a waiter on
an element (:class:`Pending`), or hands back work for the pool.  A waiter is
bound to its connection through :class:`Hooks`, so a hang-up cancels it and a
completed one wakes the loop.  Keeping these types apart from the loop keeps
the service (``pastset.server.service``) free of the loop's sockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from pastset.core.waiter import Waiter
from pastset.core.waits import Caller

__all__ = ["Hooks", "Outcome", "Pending", "Reply", "Service"]


class Reply:
    """A reply ready to send: its parts, and the tuples it hands over (to give back if it never arrives)."""

    __slots__ = ("parts", "taken")

    def __init__(self, parts: list[bytes | memoryview], taken: tuple[Any, list[int], list[Any]] | None = None) -> None:
        self.parts = parts
        #: (element, indices, values) of an unindexed observe, None otherwise
        self.taken = taken


class Pending:
    """A request queued on an element: its waiter, and when it gives up (monotonic, or None)."""

    __slots__ = ("element", "until", "waiter")

    def __init__(self, element: Any, waiter: Waiter) -> None:
        self.element = element
        self.waiter = waiter
        self.until = None if waiter.timeout is None else time.monotonic() + max(0.0, waiter.timeout)


#: What starting a request gives: a reply now, a queued waiter, or work for the pool.
Outcome = Reply | Pending | Callable[[], "Reply"]


class Hooks(Protocol):
    """What a service's waiters are bound to: their connection."""

    def notify(self, waiter: Waiter) -> None:
        """The waiter completed (called under its element's lock, from any thread)."""

    def alive(self) -> bool:
        """False if the connection is known to be gone."""


class Service(Protocol):
    """The space a channel serves (pastset.server.service.SpaceService)."""

    def start(self, caller: Caller, body: bytes, buffers: list[bytearray | memoryview], hooks: Hooks) -> Outcome:
        """Start one request without waiting."""

    def finish(self, pending: Pending, caller: Caller) -> Outcome:
        """The reply of a waiter that completed (or work for the pool that makes it)."""

    def timed_out(self, pending: Pending) -> Reply:
        """The reply of a waiter that gave up."""
