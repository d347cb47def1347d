"""The operations a client can ask of a space, written once for the client and the server.

A request is ``(op, *args)`` encoded by :mod:`pastset.wire`; the client builds
it from these names and the server serves exactly these names.  ``BLOCKING``
are the operations that may wait (their first argument is the element id).
"""

from __future__ import annotations

__all__ = ["BLOCKING", "ELEMENT", "OPERATIONS"]

#: Operation name -> its arguments after the name, in order.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "enter": ("template", "xfunction", "leases"),
    "move": ("eid", "data", "timeout"),
    "observe": ("eid", "index", "timeout"),
    "move_many": ("eid", "tuples", "timeout"),
    "observe_many": ("eid", "count", "timeout"),
    "ack": ("eid", "result_eid", "result", "timeout"),
    "first": ("eid",),
    "last": ("eid",),
    "template": ("eid",),
    "delta": ("eid", "value"),
    "axe": ("eid", "index"),
    "delelement": ("target",),
    "spawn": ("app", "args"),
    "halt": (),
    "ping": (),
    "channel": (),
    "store": (),
}

#: Operations that may wait until another caller acts.
BLOCKING = frozenset({"move", "observe", "move_many", "observe_many", "ack"})

#: Operations on one element: their first argument is its id.
ELEMENT = frozenset(name for name, args in OPERATIONS.items() if args[:1] == ("eid",))
