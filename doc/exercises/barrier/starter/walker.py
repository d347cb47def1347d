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
    # TODO: one element per round, e.g. pset.enter(("here", r)); every walker moves a
    # tuple into it, then waits (without taking anything) until TASKS tuples are there.


for r in range(rounds):
    time.sleep(random.uniform(0, 0.05))  # some work
    log.move(("log", r, me, "arrive"))
    barrier(r)
    log.move(("log", r, me, "leave"))
