"""X-function (old style): timestamp tuples when moved and when observed.

Used by xtimestampapp.py:  pypsrun examples/xtimestampapp.py
X-in (move) appends time.asctime() to every tuple.  X-out (observe) appends a
second timestamp on unindexed observes and writes the annotated tuple back into
the log, so a later observe(i) shows when tuple i was taken.  Written as in
pyPastSet: the private hook super().__set_entry (mangled to _Element__set_entry,
still provided by the base class) on index first() - 1, the tuple just taken.
New code should call the public self.set_entry instead.
"""

import time

import pastset.element


class Element(pastset.element.Element):
    """An element that stamps tuples on the way in and on the way out."""

    def move(self, data):
        super().move(tuple(data) + (time.asctime(),))

    def observe(self, index=-1):
        data = super().observe(index)
        if index < 0:
            data = tuple(data) + (time.asctime(),)
            target = super().first() - 1
            super().__set_entry(target, data)
        return data
