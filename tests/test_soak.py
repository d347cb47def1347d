"""Load and soak: 16 client processes of mixed moves, observes and indexed observes.

The checker proves no tuple lost, none duplicated, indices dense and in order.
CI runs it short; ``PASTSET_SOAK_OPS=20000 bash tests/run -k soak`` (or
``bench/soak.sh``) runs the long version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest

import pastset

pytestmark = pytest.mark.timeout(1800)

OPS = int(os.environ.get("PASTSET_SOAK_OPS", "600"))
CLIENTS = 16
ELEMENTS = 4

WORKER = """
import json, random, sys, pastset
me, ops, out, count = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
p = pastset.PastSet()
elements = [p.enter(("soak", n, int, int)) for n in range(count)]
rng = random.Random(me)
moved, taken, checked = 0, [], 0
for i in range(ops):
    e = rng.randrange(len(elements))
    r = rng.random()
    if r < 0.5:
        elements[e].move((e, me, moved))
        moved += 1
    elif r < 0.85:
        try:
            taken.append(elements[e].observe(timeout=0.01))
        except pastset.PastSetTimeoutError:
            pass
    else:
        last = elements[e].last()
        if last:
            index = rng.randrange(last)
            value = elements[e].observe(index)
            assert value[0] == e, (value, e)
            checked += 1
json.dump({"moved": moved, "taken": taken, "checked": checked}, open(out, "w"))
"""


def test_soak_no_tuple_lost_or_duplicated_indices_dense_and_ordered(server, tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(k), str(OPS), str(tmp_path / f"{k}.json"), str(ELEMENTS)],
            env=server.env(),
        )
        for k in range(CLIENTS)
    ]
    for proc in procs:
        assert proc.wait(1500) == 0
    reports = [json.loads((tmp_path / f"{k}.json").read_text()) for k in range(CLIENTS)]
    pset = pastset.PastSet()
    elements = [pset.enter(("soak", n, int, int)) for n in range(ELEMENTS)]
    taken = [tuple(t) for r in reports for t in r["taken"]]
    for e in elements:  # drain what nobody observed
        while e.first() < e.last():
            taken.append(e.observe())
    moved = {(k, i) for k, r in enumerate(reports) for i in range(r["moved"])}
    taken_keys = [(t[1], t[2]) for t in taken]
    assert len(taken_keys) == len(set(taken_keys)), "a tuple was observed twice"
    assert set(taken_keys) == moved, "a tuple was lost"
    for n, e in enumerate(elements):
        history = [e.observe(i) for i in range(e.last())]  # dense: every index answers
        assert all(t[0] == n for t in history)
        per_producer: dict[int, list[int]] = defaultdict(list)
        for _, who, seq in history:
            per_producer[who].append(seq)
        for seqs in per_producer.values():
            assert seqs == sorted(seqs), "a producer's tuples are out of order"
    total_ops = sum(r["moved"] + len(r["taken"]) + r["checked"] for r in reports)
    print(
        f"soak: {CLIENTS} clients x {OPS} ops: {len(moved)} moved, {len(taken)} observed exactly once, "
        f"{sum(r['checked'] for r in reports)} indexed reads, {total_ops} successful operations"
    )
