"""Exercise 3 (barrier), one walker: walker.py ME TASKS ROUNDS."""

import random
import sys
import time

import pastset

me, tasks, rounds = (int(a) for a in sys.argv[1:4])
pset = pastset.PastSet()
log = pset.enter(("log", int, int, str))


def barrier(r: int) -> None:
    """Wait until all TASKS walkers have reached round r."""
    here = pset.enter(("here", r))
    here.move(("here", r))
    here.observe(tasks - 1, timeout=30)  # indexed: wait until the last of them has moved, take nothing


for r in range(rounds):
    time.sleep(random.uniform(0, 0.05))  # some work
    log.move(("log", r, me, "arrive"))
    barrier(r)
    log.move(("log", r, me, "leave"))
