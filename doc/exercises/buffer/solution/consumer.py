"""Exercise 5 (bounded buffer), the consumer: PRODUCERS producers, at most DELTA items waiting.

Run:  PSPROCS=2 pypsrun doc/exercises/buffer/solution/consumer.py [PRODUCERS [ITEMS [DELTA]]]
The consumer is slow on purpose; the backlog (last - first) it sees must never
exceed DELTA, and every producer's items must arrive in order.
"""

import sys
import time

import pastset

producers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
items = int(sys.argv[2]) if len(sys.argv) > 2 else 15
delta = int(sys.argv[3]) if len(sys.argv) > 3 else 3

pset = pastset.PastSet()
buffer = pset.enter(("buffer", int, int))
buffer.delta(delta)
for me in range(producers):
    pset.spawn("maker.py", [me, items])

most, nexts = 0, [0] * producers
for _ in range(producers * items):
    _, me, i = buffer.observe(timeout=30)
    if i != nexts[me]:
        sys.exit(f"consumer: item {i} of producer {me} came out of order")
    nexts[me] += 1
    most = max(most, buffer.last() - buffer.first())
    time.sleep(0.02)  # a slow consumer: the producers fill the buffer
pset.halt()

if most > delta:
    sys.exit(f"consumer: the backlog reached {most} > {delta}: the buffer is not bounded")
print(f"consumer: {producers * items} items, in order, backlog at most {most} <= {delta}: correct")
