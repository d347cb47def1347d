"""Dining philosophers: forks are tuples, a butler's seats prevent deadlock.

Run:  PSPROCS=5 pypsrun examples/philosophers.py [PHILOSOPHERS [MEALS]]   (default 5 3)
Fork i is the element ('fork', i) holding one tuple: taking the tuple with an
unindexed observe picks the fork up (a second philosopher blocks until it is
moved back).  If every philosopher held a left fork, all would wait forever for
a right one; so a butler, the element ('seat',) with PHILOSOPHERS - 1 tuples,
lets at most that many try at once, and one of them always gets both forks.
Each philosopher (philosopher.py) moves ('table', me, 'eats') once it holds both
forks and ('table', me, 'done') before putting them down.  The element's order
is one global order of those events: this program replays it with indexed
observes, checks that no two neighbours ever ate at once, and counts the meals.
"""

import sys

import pastset

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
meals = int(sys.argv[2]) if len(sys.argv) > 2 else 3

pset = pastset.PastSet()
for i in range(n):
    pset.enter(("fork", i)).move(("fork", i))
seats = pset.enter(("seat",))
for _ in range(n - 1):
    seats.move(("seat",))
table = pset.enter(("table", int, str))
for me in range(n):
    pset.spawn("philosopher.py", [me, n, meals])

eating, most, ate = set(), 0, [0] * n
for i in range(2 * n * meals):
    _, who, event = table.observe(i)  # indexed: waits for event i, takes nothing
    if event == "eats":
        if {(who - 1) % n, (who + 1) % n} & eating:
            sys.exit(f"philosophers: {who} ate next to a neighbour (event {i}, eating {sorted(eating)})")
        eating.add(who)
        ate[who] += 1
        most = max(most, len(eating))
    else:
        eating.remove(who)
pset.halt()

for who in range(n):
    print(f"philosopher {who} ate {ate[who]} times")
print(f"no two neighbours ever ate at once; at most {most} of {n} ate together; no deadlock")
