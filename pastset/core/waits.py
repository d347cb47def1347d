"""Who waits on what: the callers of a space and their blocked operations.

A :class:`Caller` is what the server knows of one connection, whichever
transport carries it (the direct channel or Pyro5): the task it serves, where
it runs, and the leases it holds.  Every operation that blocks is a
:class:`Wait` in its space's :class:`WaitRegistry` from the moment it blocks
until it completes, times out or is cancelled; ``pypsmanage waiting``, the web
page and the run's stall detection read that registry and nothing else.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Caller", "Wait", "WaitRegistry", "show_template"]


def show_template(template: tuple) -> str:
    """A template as its author wrote it: ``('results', float)``, not ``<class 'float'>``."""
    parts = [part.__name__ if isinstance(part, type) else repr(part) for part in template]
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"  # () and (a, b) alike


@dataclass(eq=False)
class Caller:
    """One client connection as the space sees it (the same object for both transports)."""

    #: the spawned task this connection serves ("" for the run's app or a tool)
    task: str = ""
    #: the host and pid of the client process, and its application, as it said at connect time
    host: str = ""
    pid: int = 0
    app: str = ""
    #: unacknowledged leased tuples: (space, element id, tuple)
    leases: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class Wait:
    """One blocked operation."""

    caller: Caller
    eid: int
    template: tuple
    op: str
    #: wall-clock time it started to wait (time.time())
    since: float
    #: seconds it may wait in all, None for as long as it takes
    timeout: float | None = None

    def describe(self) -> dict[str, Any]:
        """Plain data for views (msgpack- and JSON-friendly)."""
        return {
            "task": self.caller.task,
            "host": self.caller.host,
            "pid": self.caller.pid,
            "app": self.caller.app,
            "element": self.eid,
            "template": show_template(self.template),
            "op": self.op,
            "since": self.since,
            "timeout": self.timeout,
        }


class WaitRegistry:
    """The blocked operations of one space; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: dict[int, Wait] = {}
        self._ids = itertools.count()
        #: time.monotonic() of the last change (a wait began or ended)
        self.changed = time.monotonic()

    def add(self, wait: Wait) -> int:
        """Record ``wait``; returns the key that :meth:`remove` takes."""
        with self._lock:
            key = next(self._ids)
            self._waits[key] = wait
            self.changed = time.monotonic()
            return key

    def remove(self, key: int) -> None:
        """Forget a wait (completed, timed out or cancelled); unknown keys are ignored."""
        with self._lock:
            if self._waits.pop(key, None) is not None:
                self.changed = time.monotonic()

    def snapshot(self) -> list[Wait]:
        """The waits now, oldest first."""
        with self._lock:
            return sorted(self._waits.values(), key=lambda w: w.since)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waits)
