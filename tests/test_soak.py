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


def test_soak_no_tuple_lost_or_duplicated_indices_dense_and_ordered(store_server, tmp_path):
    _soak(store_server, tmp_path)


def _soak(server, tmp_path, during=None):
    """Run the workers (calling ``during()`` while they run), then check every tuple; returns the counts."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(k), str(OPS), str(tmp_path / f"{k}.json"), str(ELEMENTS)],
            env=server.env(),
        )
        for k in range(CLIENTS)
    ]
    try:
        if during is not None:
            during()
        codes = [proc.wait(1500) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert codes == [0] * CLIENTS
    reports = [json.loads((tmp_path / f"{k}.json").read_text()) for k in range(CLIENTS)]
    pset = pastset.PastSet()
    elements = [pset.enter(("soak", n, int, int)) for n in range(ELEMENTS)]
    taken = [tuple(t) for r in reports for t in r["taken"]]
    for e in elements:  # drain what nobody observed
        while e.first() < e.last():
            taken.append(e.observe())
    moved = {(k, i) for k, r in enumerate(reports) for i in range(r["moved"])}
    taken_keys = [(t[1], t[2]) for t in taken]
    duplicated = len(taken_keys) - len(set(taken_keys))
    lost = len(moved - set(taken_keys))
    print(f"soak: {lost} lost, {duplicated} duplicated")
    assert duplicated == 0, "a tuple was observed twice"
    assert lost == 0, "a tuple was lost"
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


def test_soak_survives_a_killed_cluster_master(tmp_path, monkeypatch):
    """3 masters with a replica each, writes waiting for the replica (``?wait=1``); the master holding most
    soak elements is SIGKILLed mid-run: the run goes on, and no tuple is lost or handed out twice."""
    import time

    from conftest import start_server, stop_server
    from redis_servers import start_cluster

    cluster = start_cluster(tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=2000)
    srv = None
    try:
        srv = start_server(tmp_path, store=cluster.url + "?wait=1")
        monkeypatch.setenv("PSNS", srv.address)
        monkeypatch.setenv("PSRUN", srv.run)
        pset = pastset.PastSet()
        elements = [pset.enter(("soak", n, int, int)) for n in range(ELEMENTS)]
        slots = [cluster.nodes[0].client().cluster("keyslot", f"{{ps:{srv.run}:e{n + 1}}}:m") for n in range(ELEMENTS)]
        killed = []

        def kill_a_master() -> None:
            deadline = time.monotonic() + 300
            while sum(e.last() for e in elements) < CLIENTS * OPS // 8 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling the run's progress, observable state
            owners: dict[int, int] = {}
            ranges = cluster.nodes[0].client().execute_command("CLUSTER", "SLOTS")
            for start, end, master, *_ in ranges:
                port = int(master[1])
                owners[port] = owners.get(port, 0) + sum(1 for s in slots if start <= s <= end)
            victim_port = max(owners, key=lambda port: owners[port])
            victim = next(n for n in cluster.nodes if n.port == victim_port)
            victim.kill()
            killed.append(victim_port)

        _soak(srv, tmp_path, during=kill_a_master)
        assert killed and killed[0] not in [n.port for n in cluster.primaries()]  # the run went on after a failover
    finally:
        if srv is not None:
            stop_server(srv)
        cluster.stop()
