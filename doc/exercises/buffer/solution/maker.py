"""Exercise 5 (bounded buffer), one producer: maker.py ME ITEMS moves ITEMS items as fast as it can."""

import sys

import pastset

me, items = int(sys.argv[1]), int(sys.argv[2])
buffer = pastset.PastSet().enter(("buffer", int, int))
for i in range(items):
    buffer.move(("buffer", me, i))  # blocks while the buffer is full
