"""Exercise 2 (pipeline), the source and sink: lines go through 'upper' then 'reverse'.

Run:  PSPROCS=2 pypsrun doc/exercises/pipeline/solution/shout.py
"""

import sys

import pastset

LINES = ["the quick brown fox", "jumps over", "the lazy dog", "tuple spaces are fun"]
STAGES = ["upper", "reverse"]

pset = pastset.PastSet()
links = [pset.enter(("text", k, int, str)) for k in range(len(STAGES) + 1)]
for k, op in enumerate(STAGES):
    pset.spawn("textstage.py", [k, op])
for seq, line in enumerate(LINES):
    links[0].move(("text", 0, seq, line))
links[0].move(("text", 0, -1, ""))  # the end of the stream

got = []
while True:
    _, _, seq, line = links[-1].observe()
    if seq < 0:
        break
    got.append(line)
pset.halt()

expected = [" ".join(reversed(line.upper().split())) for line in LINES]
if got != expected:
    sys.exit(f"shout: got {got}, expected {expected}")
for line in got:
    print(line)
print(f"shout: {len(got)} lines through {len(STAGES)} stages, in order: correct")
