"""Exercise 6 (find the deadlock), one partner: partner.py ME swaps 100 + ME for the other's value."""

import sys

import pastset

me = int(sys.argv[1])
other = 1 - me
pset = pastset.PastSet()
mine, theirs = pset.enter(("mailbox", me)), pset.enter(("mailbox", other))

value = theirs.observe()  # wait for the other's value ...
mine.move(("mailbox", 100 + me))  # ... then give mine
pset.enter(("swapped", int, int)).move(("swapped", me, value[1]))
