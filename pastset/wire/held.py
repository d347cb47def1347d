"""Large ``bytes`` out of band: the server's held form of them, and the sender's mark.

A ``bytes`` field of a tuple of :data:`~pastset.wire.kinds.OUT_OF_BAND` bytes
or more travels beside the message body, as large NumPy arrays do.  The sender
marks such fields (:func:`_beside`); the server keeps what arrives in the
memory it arrived in (:class:`HeldBytes`) and sends it on from there.
"""

from __future__ import annotations

import operator
from typing import Any

from pastset.wire.kinds import OUT_OF_BAND


class HeldBytes:
    """A large ``bytes`` value as the server holds it: a read-only view of the memory it arrived in.

    The server decodes an out-of-band ``bytes`` field (``decode_parts(...,
    hold=True)``) into this, not into ``bytes``: making a ``bytes`` of 64 MiB
    copies it into fresh memory with the interpreter lock held (some 40 ms
    here), and every other client of the server waits that long.  Held, the
    value is never copied: :func:`encode_parts` hands the same memory to the
    socket when an observer takes it.  It has the length, equality and hash of
    the ``bytes`` it stands for, and ``bytes(value)`` gives them.  Clients
    always receive plain ``bytes``; X-functions get plain ``bytes`` too (see
    :func:`released`).
    """

    __slots__ = ("view",)

    def __init__(self, buffer: Any) -> None:
        self.view = memoryview(buffer).toreadonly()

    def __len__(self) -> int:
        return self.view.nbytes

    @property
    def nbytes(self) -> int:
        """The size in bytes, as NumPy arrays say it (what the server counts as large)."""
        return self.view.nbytes

    def __bytes__(self) -> bytes:
        return self.view.tobytes()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeldBytes):
            return self.view == other.view
        return isinstance(other, bytes) and self.view == other

    def __hash__(self) -> int:
        return hash(self.view.tobytes())

    def __repr__(self) -> str:
        return repr(self.view.tobytes())


def released(value: Any) -> Any:
    """``value`` with every :class:`HeldBytes` in its tuples and lists made plain ``bytes`` (for user code)."""
    kind = type(value)
    if kind is HeldBytes:
        return value.view.tobytes()
    if kind is tuple or kind is list:
        items = [released(item) for item in value]
        if all(map(operator.is_, items, value)):
            return value  # nothing held inside: the same object
        return tuple(items) if kind is tuple else items
    return value


class _Beside:
    """A ``bytes`` field of a tuple being encoded, marked to travel out of band (never copied)."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value


def _beside(fields: tuple) -> list[Any] | None:
    """``fields`` with each large ``bytes`` marked to go out of band; None if there is none."""
    marked = [_Beside(f) if type(f) is bytes and len(f) >= OUT_OF_BAND else f for f in fields]
    return marked if any(type(f) is _Beside for f in marked) else None
