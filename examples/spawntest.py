"""Spawn with arguments: start spawnclient.py several times, collect what each got.

Run:  PSPROCS=2 pypsrun examples/spawntest.py
spawn takes the arguments as a string (split on whitespace) or as a list/tuple
whose items are converted with str.  Each spawnclient.py moves its sys.argv[1:]
back into the element ('spawned', tuple); spawntest takes one reply per spawn,
prints them sorted, then halts the run.
"""

import pastset

pset = pastset.PastSet()
replies = pset.enter(("spawned", tuple))

arglists = [
    "hello world",  # a string: two arguments
    ("test", -1),  # a tuple: items converted with str
    [],  # no arguments at all
]
arglists += [list(range(n)) for n in range(1, 4)]  # [0], [0, 1], [0, 1, 2]
for args in arglists:
    pset.spawn("spawnclient.py", args)

collected = sorted(replies.observe()[1] for _ in arglists)
for args in collected:
    print(f"spawnclient got {list(args)}")
print(f"spawntest: collected {len(collected)} replies from {len(arglists)} spawns")
pset.halt()
