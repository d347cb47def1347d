"""X-function (new style): a priority queue, highest priority observed first.

Used by xpriorityapp.py:  pypsrun examples/xpriorityapp.py
The priority is the tuple's first int or float field per the template, e.g.
position 1 of ('job', int, str).  Written with the documented hooks only:
super().move/observe/first/last, self.template(), self.set_entry and self.lock.
An unindexed observe moves the best waiting tuple (ties: the oldest) to the
slot at first, shifting the older ones up a slot so the waiting tuples stay in
arrival order, and takes it; the log thus ends up in the order tuples were
handed out.  Indexed observes are plain reads.
"""

import pastset
import pastset.element


class Element(pastset.element.Element):
    """An element whose unindexed observe returns the highest priority first."""

    def __init__(self, template):
        super().__init__(template)
        numeric = [i for i, entry in enumerate(self.template()) if entry in (int, float)]
        if not numeric:
            raise pastset.PastSetTypeError(f"xpriority needs an int or float field in {template!r}")
        self.rank_at = numeric[0]

    def move(self, data):
        # X-in: refuse tuples without a usable priority, so observe never fails on them.
        if len(data) <= self.rank_at or not isinstance(data[self.rank_at], (int, float)):
            raise pastset.PastSetTypeError(
                f"xpriority: position {self.rank_at} of {data!r} must be a number (the priority)"
            )
        super().move(data)

    def observe(self, index=-1):
        if index >= 0:
            return super().observe(index)
        with self.lock:  # the server holds it too; waiting in observe releases it
            while super().first() == super().last():
                super().observe(super().first())  # wait for a tuple without taking it
            peek = super().observe  # indexed observe: a plain read
            first = super().first()
            best = max(range(first, super().last()), key=lambda i: (peek(i)[self.rank_at], -i))
            chosen = peek(best)
            for i in range(best, first, -1):  # shift the older waiting tuples up one slot
                self.set_entry(i, peek(i - 1))
            self.set_entry(first, chosen)
            return super().observe()
