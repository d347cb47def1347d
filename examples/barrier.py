"""Barrier: N spawned tasks wait for each other at the end of every round.

Run:  PSPROCS=4 pypsrun examples/barrier.py [TASKS [ROUNDS [WAIT]]]   (default 4 tasks, 3 rounds)
Every task must run at the same time, so give at least TASKS clients.  The
barrier is the element ('arrived', int, int), a log of arrivals: a task that
finishes round r moves ('arrived', r, me), then waits with the indexed observe
observe(N * (r + 1) - 1), which blocks until N * (r + 1) tuples exist, that is,
until all N tasks have arrived in round r.  Nothing is reset and nothing polls.
Each task (barrierworker.py) then reads its round's N arrivals and reports them
here; one line per round shows the arrival order and that all N had arrived
before anyone went on.  If too few clients are running, the first round cannot
complete: this program says so after WAIT seconds (default 30), using a timeout.
"""

import sys

import pastset

tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 4
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
wait = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0

pset = pastset.PastSet()
arrived = pset.enter(("arrived", int, int))
left = pset.enter(("left", int, int, tuple))
for me in range(tasks):
    pset.spawn("barrierworker.py", [me, tasks, rounds])

try:
    arrived.observe(tasks - 1, timeout=wait)  # the first round's barrier, seen from here
except pastset.PastSetTimeoutError:
    pset.halt()
    sys.exit(
        f"barrier: only {arrived.last()} of {tasks} tasks arrived within {wait:g} s; "
        f"a barrier needs all tasks running at once: run with PSPROCS={tasks}"
    )

reports = {}
for _ in range(tasks * rounds):
    _, r, me, seen = left.observe()
    reports[r, me] = sorted(seen)
everyone = list(range(tasks))
for r in range(rounds):
    order = [arrived.observe(i)[2] for i in range(tasks * r, tasks * (r + 1))]
    if any(reports[r, me] != everyone for me in everyone):
        sys.exit(f"barrier: round {r} broken: {reports}")
    print(f"round {r}: arrival order {' '.join(map(str, order))}; every task saw all {tasks} arrivals")
print(f"barrier: {tasks} tasks x {rounds} rounds, no task left a round before all had arrived")
pset.halt()
