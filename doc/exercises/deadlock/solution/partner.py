"""Exercise 6 (find the deadlock), one partner: partner.py ME swaps 100 + ME for the other's value.

Both partners waited for the other's value before giving their own: each waited
in observe on the other's mailbox, forever.  Giving first breaks the cycle (a
move never waits on an unbounded element).
"""

import sys

import pastset

me = int(sys.argv[1])
other = 1 - me
pset = pastset.PastSet()
mine, theirs = pset.enter(("mailbox", me)), pset.enter(("mailbox", other))

mine.move(("mailbox", 100 + me))  # give mine first ...
value = theirs.observe()  # ... then wait for the other's
pset.enter(("swapped", int, int)).move(("swapped", me, value[1]))
