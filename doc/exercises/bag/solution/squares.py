"""Exercise 1 (bag of tasks), the master: sum of k*k for k in 1..N, in chunks, by WORKERS workers.

Run:  PSPROCS=2 pypsrun doc/exercises/bag/solution/squares.py [N [CHUNK [WORKERS]]]
"""

import sys

import pastset

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
WAIT = 10  # seconds for the next result: a bag of tasks never waits forever

pset = pastset.PastSet()
jobs = pset.enter(("sq-job", int, int))
results = pset.enter(("sq-result", int))
count = 0
for lo in range(1, n + 1, chunk):
    jobs.move(("sq-job", lo, min(lo + chunk, n + 1)))
    count += 1
for _ in range(workers):
    pset.spawn("squareworker.py")

total = 0
for _ in range(count):
    try:
        total += results.observe(timeout=WAIT)[1]
    except pastset.PastSetTimeoutError:
        sys.exit(f"squares: no result for {WAIT} s: is squareworker.py moving its results?")
pset.halt()

expected = n * (n + 1) * (2 * n + 1) // 6
if total != expected:
    sys.exit(f"squares: got {total}, expected {expected}")
print(f"squares: sum of k*k for k in 1..{n} = {total} in {count} jobs: correct")
