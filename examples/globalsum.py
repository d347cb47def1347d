"""Global sum: workers add up their share, the master combines the partial sums.

Run:  PSPROCS=4 pypsrun examples/globalsum.py [WORKERS [N]]   (default 4 workers, N = 1000000)
The sum of i*i for i = 1..N is split into WORKERS contiguous shares.  Each
worker (sumworker.py) adds up its share and moves ('partial', me, sum) into one
element; the master takes exactly WORKERS tuples with unindexed observes, in
whatever order they come, adds them, and checks the total against the formula
N(N+1)(2N+1)/6.  Integers of any size cross the wire unchanged: with N = 10000000
the total and most partial sums no longer fit in 64 bits.
"""

import sys

import pastset

workers = int(sys.argv[1]) if len(sys.argv) > 1 else 4
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000

pset = pastset.PastSet()
partials = pset.enter(("partial", int, int))
for me in range(workers):
    pset.spawn("sumworker.py", [me, workers, n])

sums = {}
for _ in range(workers):
    _, me, partial = partials.observe()
    sums[me] = partial
pset.halt()

for me in sorted(sums):
    print(f"worker {me}: {sums[me]}")
total = sum(sums.values())
expected = n * (n + 1) * (2 * n + 1) // 6
print(f"global sum of i*i for i = 1..{n}: {total}")
print(f"formula N(N+1)(2N+1)/6: {expected}: {'ok' if total == expected else 'WRONG'}")
sys.exit(0 if total == expected else 1)
