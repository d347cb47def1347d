"""Producer/consumer bounded by delta: producers block in move while the buffer is full.

Run:  PSPROCS=2 pypsrun examples/boundedbuffer.py [PRODUCERS [ITEMS [DELTA]]]   (default 2 12 4)
The buffer is the element ('buffer', int, int) with delta(DELTA): at most DELTA
tuples may wait unobserved (last - first <= DELTA), and a move that would pass
the bound blocks until an observe makes room.  PRODUCERS spawned tasks
(producer.py) each move ITEMS tuples.  This consumer first waits, without taking
anything, until DELTA tuples are there (indexed observe of tuple DELTA - 1), and
shows that no more arrive: the producers are blocked.  Then it takes every tuple
slowly, noting the backlog last - first before each observe; the largest backlog
seen never exceeds DELTA, and each producer's tuples arrive in the order it
moved them.
"""

import sys
import time

import pastset

producers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
items = int(sys.argv[2]) if len(sys.argv) > 2 else 12
delta = int(sys.argv[3]) if len(sys.argv) > 3 else 4

pset = pastset.PastSet()
buffer = pset.enter(("buffer", int, int))
buffer.delta(delta)
for me in range(producers):
    pset.spawn("producer.py", [me, items])

buffer.observe(delta - 1)  # blocks until DELTA tuples were moved; takes nothing
time.sleep(0.5)  # room for more moves, if the bound did not hold
print(f"nobody consuming: first={buffer.first()} last={buffer.last()} after 0.5 s, delta={delta}: producers blocked")

largest, at_bound, got = 0, 0, {me: [] for me in range(producers)}
for _ in range(producers * items):
    first = buffer.first()  # only this program observes, so first cannot change under us
    backlog = buffer.last() - first
    largest = max(largest, backlog)
    at_bound += backlog == delta
    _, me, seq = buffer.observe()
    got[me].append(seq)
    time.sleep(0.01)  # a slow consumer
pset.halt()

in_order = all(seqs == list(range(items)) for seqs in got.values())
print(f"consumed {producers * items} tuples, {items} from each of {producers} producers, each in order: {in_order}")
print(f"largest backlog seen: {largest} <= delta {delta}: {largest <= delta}")
print(f"the buffer was full before {at_bound} of {producers * items} observes")
sys.exit(0 if in_order and largest <= delta else 1)
