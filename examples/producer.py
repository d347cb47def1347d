"""A producer of boundedbuffer.py: move ITEMS numbered tuples into the bounded buffer.

Spawned by boundedbuffer.py as  producer.py ME ITEMS;  run the bounded buffer:
      PSPROCS=2 pypsrun examples/boundedbuffer.py
Each move blocks while the buffer holds delta unobserved tuples.
"""

import sys

import pastset

me, items = int(sys.argv[1]), int(sys.argv[2])

pset = pastset.PastSet()
buffer = pset.enter(("buffer", int, int))
for seq in range(items):
    buffer.move(("buffer", me, seq))
