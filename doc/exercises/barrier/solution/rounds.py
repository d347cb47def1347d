"""Exercise 3 (barrier), the checker: TASKS walkers do ROUNDS rounds; nobody may leave a round early.

Run:  PSPROCS=3 pypsrun doc/exercises/barrier/solution/rounds.py [TASKS [ROUNDS]]
Every walker moves ("log", round, me, "arrive") and, after the barrier,
("log", round, me, "leave") into one element, so its order is one global order
of those events.  The barrier is right if, in every round, all arrivals come
before the first leave.
"""

import sys

import pastset

tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 3
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3

pset = pastset.PastSet()
log = pset.enter(("log", int, int, str))
for me in range(tasks):
    pset.spawn("walker.py", [me, tasks, rounds])

arrived = [0] * rounds
for i in range(2 * tasks * rounds):
    _, r, me, event = log.observe(i, timeout=30)  # indexed: replay the events in order
    if event == "arrive":
        arrived[r] += 1
    elif arrived[r] < tasks:
        sys.exit(f"rounds: walker {me} left round {r} when only {arrived[r]} of {tasks} had arrived")
pset.halt()
print(f"rounds: {tasks} walkers x {rounds} rounds, nobody left a round before all had arrived: correct")
