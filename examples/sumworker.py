"""One worker of globalsum.py: add up i*i over its share of 1..N, move the partial sum.

Spawned by globalsum.py as  sumworker.py ME WORKERS N;  run the global sum:
      PSPROCS=4 pypsrun examples/globalsum.py
"""

import sys

import pastset

me, workers, n = (int(a) for a in sys.argv[1:4])
low = me * n // workers + 1  # this worker's share: low .. high
high = (me + 1) * n // workers

pset = pastset.PastSet()
partials = pset.enter(("partial", int, int))
partials.move(("partial", me, sum(i * i for i in range(low, high + 1))))
