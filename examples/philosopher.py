"""One philosopher of philosophers.py: think, get a seat, take both forks, eat, repeat.

Spawned by philosophers.py as  philosopher.py ME PHILOSOPHERS MEALS;  run the table:
      PSPROCS=5 pypsrun examples/philosophers.py
"""

import random
import sys
import time

import pastset

me, n, meals = (int(a) for a in sys.argv[1:4])

pset = pastset.PastSet()
left = pset.enter(("fork", me))
right = pset.enter(("fork", (me + 1) % n))
seats = pset.enter(("seat",))
table = pset.enter(("table", int, str))

for _ in range(meals):
    time.sleep(random.uniform(0, 0.02))  # think
    seats.observe()  # the butler: wait for a free seat
    left.observe()  # pick up the left fork, then the right one
    right.observe()
    table.move(("table", me, "eats"))
    time.sleep(random.uniform(0, 0.02))  # eat
    table.move(("table", me, "done"))
    left.move(("fork", me))  # put the forks back, then leave the seat
    right.move(("fork", (me + 1) % n))
    seats.move(("seat",))
