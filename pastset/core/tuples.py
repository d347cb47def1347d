"""The stored tuples of one element, the arithmetic of their indices, and delta.

An element numbers the tuples moved into it 0, 1, 2, ... and never reuses an
index.  Which of them are still stored (``axe`` frees the old ones), which an
unindexed observe has taken, which were given back since, and whether delta
leaves room for one more, is pure bookkeeping with no locks, waiters or
journal: :class:`TupleLog` holds it, and re-applies the element's journal
records after a restart.  Apart, :class:`pastset.core.element.Element` reads as
the element's contract and this arithmetic can be tested on its own.  The
element calls it under its lock.
"""

from __future__ import annotations

import bisect
from typing import Any

__all__ = ["TupleLog"]


class TupleLog:
    """The tuples of one element by index, and which of them are observed.

    ``last`` is the index the next tuple gets; tuples below ``base`` were freed.
    ``first`` is the lowest index never taken by an unindexed observe, and
    ``returned`` lists (sorted, all below ``first``) the indices taken and then
    given back, which are unobserved again.  ``recent`` is the index the latest
    take ended with.  ``delta`` bounds the unobserved tuples (None, 0 or less:
    unbounded).  Not thread-safe: the owner holds its own lock.
    """

    __slots__ = ("base", "data", "delta", "first", "last", "recent", "returned")

    def __init__(self) -> None:
        self.data: list[Any] = []  # tuple i lives at data[i - base]
        self.base = 0  # indices below this were freed by axe
        self.first = 0  # the lowest index never taken by an unindexed observe
        self.returned: list[int] = []  # taken, then given back: unobserved again (sorted, all < first)
        self.last = 0
        self.recent: int | None = None  # the index the latest unindexed observe took
        self.delta: int | None = None

    def lowest(self) -> int:
        """The lowest unobserved index (what ``first()`` reports); nothing from it on may be freed."""
        return self.returned[0] if self.returned else self.first

    def unobserved(self) -> int:
        """How many tuples are unobserved now (what delta bounds)."""
        return self.last - self.first + len(self.returned)

    def room(self) -> bool:
        """True if delta allows one more unobserved tuple."""
        return not self.delta or self.delta <= 0 or self.unobserved() < self.delta

    def append(self, data: Any) -> int:
        """Store ``data`` at index ``last``; returns that index."""
        self.data.append(data)
        self.last += 1
        return self.last - 1

    def get(self, index: int) -> Any:
        """The tuple at ``index`` (the caller checks ``base <= index < last``)."""
        return self.data[index - self.base]

    def replace(self, index: int, data: Any) -> None:
        """Replace the tuple at ``index`` (the caller checks ``base <= index < last``)."""
        self.data[index - self.base] = data

    def take(self, count: int) -> tuple[list[int], list[Any]]:
        """The ``count`` (at most) lowest unobserved indices and their tuples, now observed."""
        taken: list[int] = []
        returned = self.returned
        base, data = self.base, self.data
        if not returned:  # the common case: one run from first, sliced at C speed
            more = min(count, self.last - self.first)
            if more <= 0:
                return taken, []
            start = self.first
            self.first = start + more
            self.recent = start + more - 1
            return list(range(start, start + more)), data[start - base : start - base + more]
        while returned and len(taken) < count:
            taken.append(returned.pop(0))
        more = min(count - len(taken), self.last - self.first)
        if more > 0:
            taken.extend(range(self.first, self.first + more))
            self.first += more
        if taken:
            self.recent = taken[-1]
        return taken, [data[i - base] for i in taken]

    def restore(self, index: int) -> bool:
        """Make ``index``, once taken, unobserved again; False if it is freed, never taken or back already."""
        if self.base <= index < self.first and index not in self.returned:
            bisect.insort(self.returned, index)
            return True
        return False

    def free(self, index: int) -> bool:
        """Free the tuples below ``index`` that are observed; True if any were freed."""
        upto = min(index, self.lowest())
        if upto > self.base:
            del self.data[: upto - self.base]
            self.base = upto
            return True
        return False

    def clear(self) -> None:
        """Release every stored tuple: all indices so far count as freed and observed."""
        self.data = []
        self.returned = []
        self.base = self.last
        self.first = self.last

    def replay(self, kind: str, *args: Any) -> None:
        """Re-apply one journal record of the element (see :meth:`Element.replay`)."""
        if kind == "move":
            self.append(args[0])
        elif kind == "observe":
            self.take(args[0] if args else 1)
        elif kind == "unobserve":
            self.restore(args[0])
        elif kind == "delta":
            self.delta = args[0]
        elif kind == "axe":
            self.free(args[0])
        elif kind == "set" and self.base <= args[0] < self.last:
            self.replace(args[0], args[1])
