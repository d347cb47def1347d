"""The Redis store (PSSTORE) side by side with the built-in server and raw Redis: P1, P2, P4, P5, P7.

    python bench/redis_store.py            # the sizes of RESULTS.md (about 3 minutes on 2 cores)
    python bench/redis_store.py --quick    # tiny sizes, seconds

Everything runs on 127.0.0.1 and is stopped by its pid at the end: a pastset
server with elements in its own memory, one with PSSTORE=redis://... on a plain
redis-server, one with PSSTORE=redis+cluster://... on a 3-master Redis Cluster,
and the raw Redis commands the store is built on.  Variants run in interleaved
rounds; only ratios taken in the same run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgpack
from harness import (
    HERE,
    HOST,
    Processes,
    clean_env,
    cpu_seconds,
    free_port,
    interleave,
    median,
    median_us,
    read_line,
    start_pastset,
)
from harness import start_redis as start_plain_redis
from helpers import pastset_pair, redis_pair

import pastset


def start_cluster(procs: Processes, masters: int = 3) -> list[tuple[int, subprocess.Popen[Any]]]:
    """``masters`` redis-server nodes joined by ``redis-cli --cluster create``; [(port, process)]."""
    import redis

    nodes = []
    while len(nodes) < masters:
        port = free_port()
        workdir = procs.tempdir("pastset-bench-cluster-")
        argv = [shutil.which("redis-server") or "redis-server", "--bind", HOST, "--port", str(port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", workdir, "--cluster-enabled", "yes"]
        argv += ["--cluster-config-file", os.path.join(workdir, "nodes.conf"), "--maxclients", "10000"]
        proc = procs.start("redis-cluster-node", argv, stdout=subprocess.DEVNULL)
        client = redis.Redis(host=HOST, port=port)
        until = time.monotonic() + 60
        while proc.poll() is None:
            try:
                client.ping()
                nodes.append((port, proc))
                break
            except redis.ConnectionError:
                if time.monotonic() > until:
                    raise
                time.sleep(0.05)  # readiness of a process we just started
        # a node that exited lost its port to someone else: start another
    cmd = ["redis-cli", "--cluster", "create", *[f"{HOST}:{p}" for p, _ in nodes], "--cluster-yes"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    until = time.monotonic() + 60
    while any(redis.Redis(host=HOST, port=p).cluster("info")["cluster_state"] != "ok" for p, _ in nodes):
        if time.monotonic() > until:
            raise RuntimeError("the benchmark's Redis Cluster did not come up")
        time.sleep(0.1)
    return nodes


def p1(servers: dict[str, Any], redis_address: str, rounds: int, count: int) -> None:
    pairs = {name: pastset_pair(addr, "bench", ("bench-p1", int, float))[0] for name, addr in servers.items()}
    raw, _ = redis_pair(redis_address, "bench-p1-raw")
    pairs["raw RPUSH+BLPOP"] = raw
    for fn in pairs.values():
        for _ in range(200):
            fn()
    got = interleave({name: (lambda fn=fn: median_us(fn, count)) for name, fn in pairs.items()}, rounds)
    m = {name: median(v) for name, v in got.items()}
    print("P1 pair latency (median of round medians):")
    for name, us in m.items():
        print(f"  {name:<22} {us:8.1f} us  {us / m['raw RPUSH+BLPOP']:.2f}x raw Redis")


def p2(servers: dict[str, Any], redis_address: str, n: int) -> None:
    import redis

    print(f"P2 {n} tuples moved with move_many, then observed with observe_many:")
    values = [(i, i / 2) for i in range(n)]
    for name, addr in servers.items():
        e = pastset.PastSet(run="bench", ns=addr).enter(("bench-p2", int, float))
        start = time.perf_counter()
        for i in range(0, n, 1000):
            e.move_many(values[i : i + 1000])
        got: list[Any] = []
        while len(got) < n:
            got.extend(e.observe_many(1000))
        took = time.perf_counter() - start
        assert got == values, name
        print(f"  {name:<22} {2 * n / took:10,.0f} ops/s")
    host, _, port = redis_address.rpartition(":")
    r = redis.Redis(host=host, port=int(port))
    start = time.perf_counter()
    for i in range(0, n, 1000):
        r.rpush("bench-p2-raw", *[msgpack.packb(v) for v in values[i : i + 1000]])
    raw: list[Any] = []
    while len(raw) < n:
        raw.extend(msgpack.unpackb(x) for x in r.lpop("bench-p2-raw", 1000) or [])
    took = time.perf_counter() - start
    print(f"  {'raw RPUSH/LPOP batches':<22} {2 * n / took:10,.0f} ops/s")


def p4(servers: dict[str, Any], blocked: int) -> None:
    print(f"P4 {blocked} connections blocked in observe, then one more client's pair:")
    for name, addr in servers.items():
        helper = subprocess.Popen(
            [sys.executable, str(HERE / "helpers.py"), "blockers", "pastset", addr, "bench", str(blocked), "p4"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        try:
            line = read_line(helper.stdout, 300, "P4 blockers")
            pair, close = pastset_pair(addr, "bench", ("bench-p4-extra", int, float))
            us = median_us(pair, 300)
            e = pastset.PastSet(run="bench", ns=addr).enter(("bench-p4-blocked", int, float))
            e.move_many([(i, 0.5) for i in range(blocked)])
            done = read_line(helper.stdout, 300, "P4 blockers done")
            close()
            print(f"  {name:<22} {line.strip()}, pair {us:.1f} us, then {done.strip()}")
        finally:
            helper.kill()
            helper.wait()


def p5(store_address: str, redis_address: str, n: int) -> None:
    import redis

    host, _, port = redis_address.rpartition(":")
    r = redis.Redis(host=host, port=int(port))
    e = pastset.PastSet(run="bench", ns=store_address).enter(("bench-p5", int, float))
    before = r.info("memory")["used_memory"]
    for i in range(0, n, 1000):
        e.move_many([(j, float(j)) for j in range(i, i + 1000)])
    stored = r.info("memory")["used_memory"] - before
    e.observe_many(n)
    observed = r.info("memory")["used_memory"] - before
    e.axe(n)
    axed = r.info("memory")["used_memory"] - before
    before = r.info("memory")["used_memory"]
    for i in range(0, n, 1000):
        r.rpush("bench-p5-raw", *[msgpack.packb((j, float(j))) for j in range(i, i + 1000)])
    raw = r.info("memory")["used_memory"] - before
    print(f"P5 Redis memory per (int, float) tuple, {n} tuples (INFO used_memory):")
    print(f"  Redis store, stored and unobserved  {stored / n:6.1f} B  (index hash + queue list)")
    print(f"  Redis store, observed, not axed     {observed / n:6.1f} B  (index hash only)")
    print(f"  Redis store, after axe              {axed / n:6.1f} B")
    print(f"  raw Redis list of msgpack           {raw / n:6.1f} B")


def p7(stores: dict[str, tuple[str, list[int]]], clients: int, seconds: float) -> None:
    print(f"P7 {clients} client processes, each pairs on its own element, {seconds:.0f} s:")
    for name, (addr, pids) in stores.items():
        procs = [
            subprocess.Popen(
                [sys.executable, str(HERE / "helpers.py"), "pairs", "pastset", addr, "bench", f"p7-{name}-{k}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=clean_env(),
            )
            for k in range(clients)
        ]
        try:
            for p in procs:
                read_line(p.stdout, 120, "P7 client")
            start = time.time() + 0.5
            cpu0 = {pid: cpu_seconds(pid) for pid in pids}
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(f"GO {start} {start + seconds}\n")
                p.stdin.flush()
            counts = [int(read_line(p.stdout, seconds + 120, "P7 count").split()[1]) for p in procs]
            cpu = {pid: cpu_seconds(pid) - cpu0[pid] for pid in pids}
            total = sum(counts)
            spread = " ".join(f"{c:.1f}" for c in cpu.values())
            print(
                f"  {name:<22} {total / seconds:8,.0f} pairs/s; store servers' CPU {sum(cpu.values()):.1f} s "
                f"= {sum(cpu.values()) / total * 1e6:.1f} us per pair; CPU s per server process: {spread}"
            )
        finally:
            for p in procs:
                if p.stdin:
                    p.stdin.close()
                p.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="P1,P2,P4,P5,P7")
    options = parser.parse_args()
    quick = options.quick
    only = set(options.only.upper().split(","))
    procs = Processes()
    try:
        redis = start_plain_redis(procs)
        cluster = start_cluster(procs)
        cluster_url = "redis+cluster://" + ",".join(f"{HOST}:{p}" for p, _ in cluster)
        builtin = start_pastset(procs)
        on_redis = start_pastset(procs, PSSTORE=f"redis://{redis.address}")
        on_cluster = start_pastset(procs, PSSTORE=cluster_url)
        servers = {"built-in server": builtin.address, "Redis store": on_redis.address}
        print(f"pastset {pastset.__version__}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        if "P1" in only:
            p1(
                {**servers, "Redis Cluster store": on_cluster.address},
                redis.address,
                3 if quick else 7,
                200 if quick else 2000,
            )
        if "P2" in only:
            p2({**servers, "Redis Cluster store": on_cluster.address}, redis.address, 5000 if quick else 100_000)
        if "P4" in only:
            p4(servers, 50 if quick else 1000)
        if "P5" in only:
            p5(on_redis.address, redis.address, 10_000 if quick else 200_000)
        if "P7" in only:
            stores = {
                "built-in server": (builtin.address, [builtin.pid]),
                "Redis store, 1 master": (on_redis.address, [redis.pid]),
                "Redis Cluster, 3 masters": (on_cluster.address, [p.pid for _, p in cluster]),
            }
            for clients in (4, 16) if not quick else (2,):
                p7(stores, clients, 2.0 if quick else 8.0)
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
