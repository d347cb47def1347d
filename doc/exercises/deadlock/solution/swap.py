"""Exercise 6 (find the deadlock): two partners swap values through two mailboxes.

Run:  PSPROCS=2 pypsrun doc/exercises/deadlock/solution/swap.py
and, in another terminal while it hangs:  pypsmanage waiting
"""

import sys

import pastset

pset = pastset.PastSet()
done = pset.enter(("swapped", int, int))
for me in range(2):
    pset.spawn("partner.py", [me])

got = sorted(done.observe()[1:] for _ in range(2))
pset.halt()
if got != [(0, 101), (1, 100)]:
    sys.exit(f"swap: got {got}")
print("swap: partner 0 got 101 and partner 1 got 100: correct")
