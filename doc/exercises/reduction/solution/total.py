"""Exercise 4 (reduction), the master: WORKERS workers each sum k**3 over their share of 1..N.

Run:  PSPROCS=3 pypsrun doc/exercises/reduction/solution/total.py [WORKERS [N]]
"""

import sys

import pastset

workers = int(sys.argv[1]) if len(sys.argv) > 1 else 3
n = int(sys.argv[2]) if len(sys.argv) > 2 else 300_000

pset = pastset.PastSet()
partials = pset.enter(("partial", int, int))
for me in range(workers):
    pset.spawn("cubes.py", [me, workers, n])

total, seen = 0, set()
for _ in range(workers):
    _, me, part = partials.observe()
    seen.add(me)
    total += part
pset.halt()

expected = (n * (n + 1) // 2) ** 2
if total != expected or seen != set(range(workers)):
    sys.exit(f"total: got {total} from workers {sorted(seen)}, expected {expected} from all {workers}")
print(f"total: sum of k**3 for k in 1..{n} = {total} from {workers} partial sums: correct")
