"""Exercise 2 (pipeline), one stage: textstage.py K OP takes from link K and moves to link K + 1."""

import sys

import pastset

OPS = {"upper": str.upper, "reverse": lambda line: " ".join(reversed(line.split()))}

k, op = int(sys.argv[1]), sys.argv[2]
pset = pastset.PastSet()
inbox, outbox = pset.enter(("text", k, int, str)), pset.enter(("text", k + 1, int, str))
while True:
    _, _, seq, line = inbox.observe()
    if seq < 0:
        break  # TODO: the next stage (or shout.py) is still waiting for the end of the stream
    outbox.move(("text", k + 1, seq, OPS[op](line)))
