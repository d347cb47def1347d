"""The other half of ping.py: take a ping, send back the counter plus one.

Spawned by ping.py with the number of rounds as its only argument; run ping.py:
      pypsrun examples/ping.py [ROUNDS]
"""

import sys

import pastset

rounds = int(sys.argv[1])

pset = pastset.PastSet()
ping = pset.enter(("ping", int))
pong = pset.enter(("pong", int))

for _ in range(rounds):
    _, counter = ping.observe()
    pong.move(("pong", counter + 1))
