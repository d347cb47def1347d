"""The past is kept: replay an element's whole history with indexed observe.

Run:  pypsrun examples/tracer.py [N]          (default N = 10)
A producer thread moves N tuples; two consumer threads take all but the last
KEEP of them with unindexed observe, each tuple going to exactly one consumer.
The tracer then reads every tuple again with observe(i), which does not move
first, and finally axes the history: tuples below first are freed (an indexed
observe of one raises pastset.ExpiredError), tuples not yet taken are kept.
"""

import sys
import threading

import pastset

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
KEEP = 2  # tuples left for nobody, to show that axe never frees them

pset = pastset.PastSet()
trace = pset.enter(("trace", int, str))
taken = {"a": [], "b": []}


def produce():
    for i in range(N):
        trace.move(("trace", i, f"job-{i}"))


def consume(name, count):
    for _ in range(count):
        taken[name].append(trace.observe()[1])


share = (N - KEEP) // 2
threads = [
    threading.Thread(target=produce),
    threading.Thread(target=consume, args=("a", share)),
    threading.Thread(target=consume, args=("b", N - KEEP - share)),
]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()

for name, indices in taken.items():
    print(f"consumer {name} took {indices}")
print(f"before replay: first={trace.first()} last={trace.last()}")
first = trace.first()
for i in range(trace.last()):
    state = "taken" if i < first else "waiting"
    print(f"history {i}: {trace.observe(i)} {state}")
print(f"after replay: first={trace.first()} last={trace.last()}")

trace.axe(trace.last())  # frees only what was observed: indices below first
try:
    trace.observe(0)
except pastset.ExpiredError as err:
    print(f"observe(0) after axe: expired: {err}")
print(f"observe({first}) after axe: {trace.observe(first)}")
