"""Exercise 4 (reduction), one worker: cubes.py ME WORKERS N sums k**3 over its share and moves it."""

import sys

import pastset

me, workers, n = (int(a) for a in sys.argv[1:4])
low, high = me * n // workers + 1, (me + 1) * n // workers
part = sum(k**3 for k in range(low, high + 1))
pset = pastset.PastSet()
# TODO: total.py waits for ("partial", me, part) from every worker
