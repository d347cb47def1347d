"""Ping-pong: two programs bounce a counter through two elements.

Run:  pypsrun examples/ping.py [ROUNDS]       (default 10 rounds, one client)
ping spawns pong.py on a client, then each round moves ('ping', n) and waits in
an unindexed observe for pong's ('pong', n + 1).  Neither side polls: observe
blocks until the other side has moved.  Prints one line per round trip and a
final "ping: N round trips ...", then halts the run.
"""

import sys
import time

import pastset

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10

pset = pastset.PastSet()
ping = pset.enter(("ping", int))
pong = pset.enter(("pong", int))
pset.spawn("pong.py", [rounds])

counter = 0
start = time.perf_counter()
for trip in range(1, rounds + 1):
    ping.move(("ping", counter))
    _, answer = pong.observe()
    print(f"ping: round trip {trip}: sent {counter}, got {answer}")
    counter = answer
elapsed = time.perf_counter() - start

print(f"ping: {rounds} round trips, counter is {counter} ({elapsed:.3f} s, with pong's start-up)")
pset.halt()
