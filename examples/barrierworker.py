"""One task of barrier.py: work a round, arrive, wait for everyone, report, repeat.

Spawned by barrier.py as  barrierworker.py ME TASKS ROUNDS;  run the barrier:
      PSPROCS=4 pypsrun examples/barrier.py
After the barrier of round r the arrivals N*r .. N*(r+1)-1 of the log are all
round r ones (no task can arrive in round r+1 before that barrier opened); the
task reports the ids it finds there.
"""

import random
import sys
import time

import pastset

me, tasks, rounds = (int(a) for a in sys.argv[1:4])

pset = pastset.PastSet()
arrived = pset.enter(("arrived", int, int))
left = pset.enter(("left", int, int, tuple))
for r in range(rounds):
    time.sleep(random.uniform(0, 0.05))  # this round's work, of uneven length
    arrived.move(("arrived", r, me))
    arrived.observe(tasks * (r + 1) - 1)  # the barrier: blocks until all have arrived in round r
    log = [arrived.observe(i) for i in range(tasks * r, tasks * (r + 1))]
    left.move(("left", r, me, tuple(who for _, rr, who in log if rr == r)))
