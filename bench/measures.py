"""The measures P1-P7: each compares pastset with Redis (or a stated reference) in the same run.

Every measure appends :class:`~harness.Row` objects to ``bench.rows``.  Latency
ratios are pastset / Redis (lower is better); throughput ratios are
pastset / Redis (higher is better).  Variants are run in interleaved rounds
(A, B, A, B, ...) and summarised by their medians.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from harness import (
    HERE,
    HOST,
    ROOT,
    Processes,
    Row,
    Service,
    clean_env,
    cpus,
    fmt_bytes,
    fmt_rate,
    fmt_us,
    interleave,
    median,
    median_us,
    placed,
    proc_status,
    read_line,
    start_pastset,
)

SMALL = (1, 3.14)
RUN = "bench"

# pyPastSet 1.0.7 reference figures (Vinter's measurements, recorded as constants).
REF_PAIR_US = 45.5
REF_PAIR_1000_US = 93.0
REF_PAIRS_PER_S = "15-17k/s"
REF_PAIRS_PER_S_LOW = 15_000
REF_BLOCKED_MAX = 196
REF_BYTES_PER_TUPLE = 206
REF_TRIVIAL_RUN_S = 9.6


@dataclass
class Sizes:
    """How much work each measure does; ``quick`` is the seconds-long CI smoke mode."""

    quick: bool
    rounds: int = 5
    p1_pairs: int = 1500
    p2_tuples: int = 100_000
    p2_rounds: int = 2
    p2_chunk: int = 10_000
    p2_plain: int = 10_000
    p3_tuple_pairs: int = 400
    p3_array_pairs: int = 60
    p3_rounds: int = 5
    p4_blocked: int = 1000
    p4_procs: int = 2
    p4_pairs: int = 300
    p4_rounds: int = 5
    p5_tuples: int = 1_000_000
    p5_procs: int = 4
    p6_trivial_runs: int = 5
    # About 9 s of darts for one worker: a whole run's fixed cost (0.45 s for a
    # trivial app) would by itself hold a 4.5 s job below 1.85x on 2 cores.
    p6_bags: int = 64
    p6_bagsize: int = 800_000
    p6_rounds: int = 3
    p7_clients: tuple[int, ...] = (4, 16)
    p7_window: float = 1.5
    p7_rounds: int = 3

    @classmethod
    def make(cls, quick: bool) -> Sizes:
        """Full sizes, or tiny ones for ``--quick`` (every measure still runs end to end)."""
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            rounds=2,
            p1_pairs=50,
            p2_tuples=2000,
            p2_rounds=2,
            p2_chunk=500,
            p2_plain=500,
            p3_tuple_pairs=10,
            p3_array_pairs=3,
            p3_rounds=2,
            p4_blocked=20,
            p4_procs=1,
            p4_pairs=20,
            p4_rounds=2,
            p5_tuples=4000,
            p5_procs=2,
            p6_trivial_runs=2,
            p6_bags=2,
            p6_bagsize=20_000,
            p6_rounds=1,
            p7_clients=(4, 16),
            p7_window=0.3,
            p7_rounds=2,
        )


@dataclass
class Bench:
    """What every measure needs: sizes, started services, the process registry and the rows."""

    sizes: Sizes
    procs: Processes
    pastset: Service
    redis: Service
    pyro: Service
    log: Callable[[str], None]
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def pset(self) -> Any:
        """A fresh pastset client handle on the benchmark's server."""
        import pastset

        return pastset.PastSet(run=RUN, ns=self.pastset.address)

    def server_pids(self) -> list[int]:
        """The pids of the three servers started for the whole run."""
        return [self.pastset.pid, self.redis.pid, self.pyro.pid]

    def placements(self) -> list[tuple[str, set[int], set[int]]]:
        """(label, client CPUs, server CPUs): one core first, then different cores if there are two."""
        have = cpus()
        same = ("client and servers on one core", {have[-1]}, {have[-1]})
        if len(have) < 2:
            return [same]
        return [same, ("client and servers on different cores", {have[0]}, {have[-1]})]

    def single(self) -> Any:
        """Placement for single-client latency measures: everything on one core."""
        _, client, servers = self.placements()[0]
        return placed(client, servers, self.server_pids())

    def redis_client(self) -> Any:
        """A fresh redis-py client on the benchmark's redis-server."""
        import redis

        return redis.Redis(host=HOST, port=self.redis.port)


def _warm(fn: Callable[[], object], count: int = 100) -> None:
    for _ in range(count):
        fn()


# ----------------------------------------------------------------------------- P1
def p1_pair(b: Bench) -> None:
    """One client: move+observe of (1, 3.14) vs RPUSH+BLPOP, and bare Pyro5 msgpack calls.

    Measured twice: client and servers on one core (the row with the target:
    stable, and it measures the software path), then on different cores.
    """
    import Pyro5.api

    s = b.sizes
    pset = b.pset()
    element = pset.enter(("bench-p1", int, float))
    r = b.redis_client()
    packb, unpackb = msgpack.packb, msgpack.unpackb
    proxy = Pyro5.api.Proxy(b.pyro.address)
    proxy._pyroSerializer = "msgpack"

    def pastset_pair() -> None:
        element.move(SMALL)
        element.observe()

    def redis_pair() -> None:
        r.rpush("p1", packb(SMALL))
        unpackb(r.blpop(["p1"])[1])

    def pyro_call() -> None:
        proxy.echo(SMALL)

    def pyro_pair() -> None:
        proxy.put(SMALL)
        proxy.get()

    fns = {"pastset": pastset_pair, "redis": redis_pair, "pyro-call": pyro_call, "pyro-pair": pyro_pair}

    def one_round(fn: Callable[[], None]) -> float:
        value = median_us(fn, s.p1_pairs)
        element.axe(element.first())  # free the observed history (outside the timing)
        return value

    for where, client, servers in b.placements():
        with placed(client, servers, b.server_pids()):
            for fn in fns.values():
                _warm(fn)
            got = interleave({k: (lambda fn=fn: one_round(fn)) for k, fn in fns.items()}, s.rounds)
        m = {k: median(v) for k, v in got.items()}
        main = where == b.placements()[0][0]
        if main:
            b.facts["p1"] = m
        ratio = m["pastset"] / m["redis"]
        b.rows += [
            Row(
                "P1",
                f"move+observe pair, (1, 3.14), one client; {where}",
                fmt_us(m["pastset"]),
                f"Redis RPUSH+BLPOP {fmt_us(m['redis'])}",
                ratio,
                f"{REF_PAIR_US} µs" if main else "",
                "≤ 1.0x Redis" if main else "(information)",
                ratio <= 1.0 if main else None,
            ),
            Row(
                "P1",
                f"  reference: bare Pyro5 msgpack call echo((1, 3.14)); {where}",
                fmt_us(m["pastset"]),
                f"Pyro5 call {fmt_us(m['pyro-call'])}",
                m["pastset"] / m["pyro-call"],
            ),
            Row(
                "P1",
                f"  reference: bare Pyro5 put+get pair (2 calls, a deque); {where}",
                fmt_us(m["pastset"]),
                f"Pyro5 pair {fmt_us(m['pyro-pair'])}",
                m["pastset"] / m["pyro-pair"],
            ),
        ]
    proxy._pyroRelease()
    r.close()
    pset.delelement(element)
    pset.close()


# ----------------------------------------------------------------------------- P2
def p2_bulk(b: Bench) -> None:
    """N tuples moved then observed; batch calls when pastset has them, vs pipelined RPUSH/LPOP.

    When pastset has ``move_many``/``observe_many`` an extra informational row
    shows plain one-tuple calls on a smaller N against unpipelined Redis calls.
    """
    s = b.sizes
    n, chunk = s.p2_tuples, s.p2_chunk
    pset = b.pset()
    element = pset.enter(("bench-p2", int, float))
    batch = hasattr(element, "move_many") and hasattr(element, "observe_many")
    r = b.redis_client()
    packb, unpackb = msgpack.packb, msgpack.unpackb

    def pastset_round(n: int, batch: bool) -> float:
        values = [(i, float(i)) for i in range(n)]
        start = time.perf_counter()
        got: list[Any] = []
        if batch:
            for at in range(0, n, chunk):
                element.move_many(values[at : at + chunk])
            while len(got) < n:
                got.extend(element.observe_many(min(chunk, n - len(got))))
        else:
            move, observe = element.move, element.observe
            for value in values:
                move(value)
            got = [observe() for _ in range(n)]
        elapsed = time.perf_counter() - start
        _check(got, values, "pastset")
        element.axe(element.first())  # free what was observed (outside the timing)
        return n / elapsed

    def redis_round(n: int, pipelined: bool) -> float:
        values = [(i, float(i)) for i in range(n)]
        start = time.perf_counter()
        got: list[Any] = []
        if pipelined:
            pipe = r.pipeline(transaction=False)
            for at in range(0, n, chunk):
                for value in values[at : at + chunk]:
                    pipe.rpush("p2", packb(value))
                pipe.execute()
            for at in range(0, n, chunk):
                for _ in range(min(chunk, n - at)):
                    pipe.lpop("p2")
                got.extend(unpackb(raw, use_list=False) for raw in pipe.execute())
        else:
            for value in values:
                r.rpush("p2", packb(value))
            got = [unpackb(r.lpop("p2"), use_list=False) for _ in range(n)]
        elapsed = time.perf_counter() - start
        _check(got, values, "redis")
        return n / elapsed

    got = interleave({"pastset": lambda: pastset_round(n, batch), "redis": lambda: redis_round(n, True)}, s.p2_rounds)
    m = {k: median(v) for k, v in got.items()}
    how = "move_many/observe_many" if batch else "plain move/observe calls (no batch API yet)"
    ratio = m["pastset"] / m["redis"]
    b.rows.append(
        Row(
            "P2",
            f"{n:,} tuples moved then observed, {how}, chunks of {chunk:,}",
            fmt_rate(m["pastset"]),
            f"Redis pipelined RPUSH/LPOP {fmt_rate(m['redis'])}",
            ratio,
            "",
            "≥ 1.0x Redis",
            ratio >= 1.0,
        )
    )
    if batch:
        small = min(n, s.p2_plain)
        got = interleave(
            {"pastset": lambda: pastset_round(small, False), "redis": lambda: redis_round(small, False)},
            s.p2_rounds,
        )
        m = {k: median(v) for k, v in got.items()}
        b.rows.append(
            Row(
                "P2",
                f"  {small:,} tuples, plain move/observe calls (one tuple per call)",
                fmt_rate(m["pastset"]),
                f"Redis unpipelined RPUSH/LPOP {fmt_rate(m['redis'])}",
                m["pastset"] / m["redis"],
            )
        )
    r.close()
    pset.delelement(element)
    pset.close()


def _check(got: list[Any], want: list[Any], who: str) -> None:
    if len(got) != len(want) or tuple(got[-1]) != want[-1] or tuple(got[0]) != want[0]:
        raise RuntimeError(f"P2 {who}: observed {len(got)} tuples, not the {len(want)} moved, or in another order")


# ----------------------------------------------------------------------------- P3
def p3_large(b: Bench) -> None:
    """A 1000-integer tuple and a 1 MiB NumPy array: pastset pair vs Redis carrying msgpack / tobytes."""
    s = b.sizes
    pset = b.pset()
    tuple_el = pset.enter(("bench-p3-ints", tuple))
    array_el = pset.enter(("bench-p3-array", np.ndarray))
    r = b.redis_client()
    ints = tuple(range(1000))
    array = np.arange(1 << 17, dtype=np.float64)  # 131072 doubles = 1 MiB
    packb, unpackb = msgpack.packb, msgpack.unpackb

    def ps_ints() -> None:
        tuple_el.move(ints)
        tuple_el.observe()

    def rd_ints() -> None:
        r.rpush("p3i", packb(ints))
        unpackb(r.blpop(["p3i"])[1], use_list=False)

    def ps_array() -> None:
        array_el.move((array,))
        array_el.observe()

    def rd_array() -> None:
        r.rpush("p3a", array.tobytes())
        np.frombuffer(r.blpop(["p3a"])[1], dtype=np.float64)

    tuple_el.move(ints)
    back = tuple_el.observe()
    array_el.move((array,))
    (arr_back,) = array_el.observe()
    if tuple(back) != ints or not np.array_equal(arr_back, array):
        raise RuntimeError("P3: pastset did not return what was moved")

    def one_round(fn: Callable[[], None], count: int, element: Any) -> float:
        value = median_us(fn, count)
        element.axe(element.first())  # free the observed history (outside the timing)
        return value

    with b.single():
        for fn in (ps_ints, rd_ints):
            _warm(fn, 20)
        for fn in (ps_array, rd_array):
            _warm(fn, 3)
        got = interleave(
            {
                "ps-ints": lambda: one_round(ps_ints, s.p3_tuple_pairs, tuple_el),
                "rd-ints": lambda: median_us(rd_ints, s.p3_tuple_pairs),
                "ps-array": lambda: one_round(ps_array, s.p3_array_pairs, array_el),
                "rd-array": lambda: median_us(rd_array, s.p3_array_pairs),
            },
            s.p3_rounds,
        )
    m = {k: median(v) for k, v in got.items()}
    b.facts["p3"] = m
    ri, ra = m["ps-ints"] / m["rd-ints"], m["ps-array"] / m["rd-array"]
    b.rows += [
        Row(
            "P3",
            "pair of a 1000-integer tuple; one core",
            fmt_us(m["ps-ints"]),
            f"Redis + msgpack {fmt_us(m['rd-ints'])}",
            ri,
            f"{REF_PAIR_1000_US:.0f} µs",
            "≤ 1.5x Redis",
            ri <= 1.5,
        ),
        Row(
            "P3",
            "pair of a 1 MiB NumPy array (float64); one core",
            fmt_us(m["ps-array"]),
            f"Redis + tobytes {fmt_us(m['rd-array'])}",
            ra,
            "",
            "≤ 1.5x Redis",
            ra <= 1.5,
        ),
    ]
    r.close()
    pset.delelement(tuple_el)
    pset.delelement(array_el)
    pset.close()


# ----------------------------------------------------------------------------- P4
def p4_blocked(b: Bench) -> None:
    """N connections blocked in observe (BLPOP for Redis), then one more client's pair latency.

    Uses a fresh PastSet server, so its thread count and RSS show the blocked
    clients and nothing left over from earlier measures.
    """
    import pastset

    s = b.sizes
    n, nprocs = s.p4_blocked, s.p4_procs
    shares = [n // nprocs + (1 if i < n % nprocs else 0) for i in range(nprocs)]
    server = start_pastset(b.procs, RUN)
    pset = pastset.PastSet(run=RUN, ns=server.address)
    r = b.redis_client()
    probe = pset.enter(("bench-p4-probe", int, float))  # connects this client before the idle figures
    time.sleep(0.3)
    idle = proc_status(server.pid)
    redis_idle = proc_status(b.redis.pid)
    helpers: dict[str, list[subprocess.Popen[Any]]] = {"pastset": [], "redis": []}
    try:
        for system, service in (("pastset", server), ("redis", b.redis)):
            for share in shares:
                argv = [sys.executable, str(HERE / "helpers.py"), "blockers", system, service.address, RUN]
                argv += [str(share), "p4:blocked"]
                helpers[system].append(
                    b.procs.start(
                        f"p4-{system}",
                        argv,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        env=clean_env(),
                        text=True,
                    )
                )
        for system, group in helpers.items():
            for proc in group:
                line = read_line(proc.stdout, 120, f"P4 {system} blockers")
                if not line.startswith("CONNECTED"):
                    raise RuntimeError(f"P4 {system} blockers: {line}")
        b.log(f"P4: {n} pastset and {n} Redis connections open")
        _settle(server.pid, r, n)
        busy = proc_status(server.pid)
        redis_busy = proc_status(b.redis.pid)
        blocked = int(r.info("clients").get("blocked_clients", 0))
        packb, unpackb = msgpack.packb, msgpack.unpackb

        def ps_pair() -> None:
            probe.move(SMALL)
            probe.observe()

        def rd_pair() -> None:
            r.rpush("p4:probe", packb(SMALL))
            unpackb(r.blpop(["p4:probe"])[1])

        b.log(f"P4: {n} pastset and {blocked} Redis clients blocked; timing one more client's pairs")
        _, client_cpus, server_cpus = b.placements()[0]
        with placed(client_cpus, server_cpus, [server.pid, b.redis.pid]):
            _warm(ps_pair, 20)
            _warm(rd_pair, 20)
            got = interleave(
                {"pastset": lambda: median_us(ps_pair, s.p4_pairs), "redis": lambda: median_us(rd_pair, s.p4_pairs)},
                s.p4_rounds,
            )
        m = {k: median(v) for k, v in got.items()}
        # Release everyone: one tuple (or list value) per blocked client.
        release = pset.enter(("bench-p4-blocked", int, float))
        for _ in range(n):
            release.move(SMALL)
        r.rpush("p4:blocked", *([packb(SMALL)] * n))
        for system, group in helpers.items():
            for proc in group:
                line = read_line(proc.stdout, 60, f"P4 {system} blockers")
                if not line.startswith("DONE"):
                    raise RuntimeError(f"P4 {system} blockers at the end: {line}")
    finally:
        for group in helpers.values():
            for proc in group:
                b.procs.stop(proc)
        pset.close()
        b.procs.stop(server.proc)
    r.close()
    ratio = m["pastset"] / m["redis"]
    b.rows += [
        Row(
            "P4",
            f"pair latency (median) with {n} other clients blocked in observe; one core",
            fmt_us(m["pastset"]),
            f"Redis, {blocked} blocked in BLPOP: {fmt_us(m['redis'])}",
            ratio,
            f"max {REF_BLOCKED_MAX} blocked clients",
            "median < 10 ms",
            m["pastset"] < 10_000,
        ),
        Row(
            "P4",
            f"  server threads and RSS with {n} blocked clients",
            f"{busy['threads']} threads, {fmt_bytes(busy['rss'])}",
            f"Redis {redis_busy['threads']} threads, {fmt_bytes(redis_busy['rss'])}",
        ),
        Row(
            "P4",
            f"  server RSS per blocked client (idle: {idle['threads']} threads, {fmt_bytes(idle['rss'])}; "
            f"Redis idle {fmt_bytes(redis_idle['rss'])})",
            f"{(busy['rss'] - idle['rss']) / n / 1024:.1f} KiB",
            f"Redis {(redis_busy['rss'] - redis_idle['rss']) / n / 1024:.1f} KiB",
        ),
    ]


def _settle(pid: int, r: Any, n: int) -> None:
    """Wait until the blocked calls have arrived: Redis counts them; pastset's server goes quiet.

    (A blocked observe no longer costs pastset a thread, so its thread count tells nothing here.)
    """
    until = time.monotonic() + 60
    while int(r.info("clients").get("blocked_clients", 0)) < n and time.monotonic() < until:
        time.sleep(0.05)
    last, quiet_since = _cpu(pid), time.monotonic()
    while time.monotonic() < until:
        time.sleep(0.1)
        now = _cpu(pid)
        if now - last > 2:  # clock ticks: still working through arriving requests
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 0.5:
            return
        last = now


def _cpu(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


# ----------------------------------------------------------------------------- P5
def p5_memory(b: Bench) -> None:
    """Server memory for N stored (int, float) tuples: pastset RSS growth vs Redis list memory."""
    s = b.sizes
    n, nprocs = s.p5_tuples, s.p5_procs
    server = start_pastset(b.procs, RUN)
    fillers: list[subprocess.Popen[Any]] = []
    try:
        share = n // nprocs
        for i in range(nprocs):
            count = share if i < nprocs - 1 else n - share * (nprocs - 1)
            argv = [sys.executable, str(HERE / "helpers.py"), "fill", server.address, RUN, str(i * share), str(count)]
            fillers.append(
                b.procs.start(
                    "p5-fill", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_env(), text=True
                )
            )
        for proc in fillers:
            read_line(proc.stdout, 60, "P5 filler")
        time.sleep(0.3)
        before = proc_status(server.pid)["rss"]
        start = time.perf_counter()
        for proc in fillers:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in fillers:
            line = read_line(proc.stdout, 600, "P5 filler")
            if not line.startswith("DONE"):
                raise RuntimeError(f"P5 filler: {line}")
        fill_s = time.perf_counter() - start
        after = proc_status(server.pid)["rss"]
        import pastset

        with pastset.PastSet(run=RUN, ns=server.address) as pset:
            last = pset.enter(("bench-p5", int, float)).last()
        if last != n:
            raise RuntimeError(f"P5: the element holds {last} tuples, not {n}")
    finally:
        for proc in fillers:
            b.procs.stop(proc)
        b.procs.stop(server.proc)
    per_tuple = (after - before) / n

    r = b.redis_client()
    r.delete("p5")
    used0 = int(r.info("memory")["used_memory"])
    rss0 = proc_status(b.redis.pid)["rss"]
    chunk = 10_000
    for at in range(0, n, chunk):
        r.rpush("p5", *(msgpack.packb((i, float(i))) for i in range(at, min(n, at + chunk))))
    used1 = int(r.info("memory")["used_memory"])
    rss1 = proc_status(b.redis.pid)["rss"]
    if r.llen("p5") != n:
        raise RuntimeError("P5: the Redis list does not hold every value")
    r.delete("p5")
    r.close()
    redis_per = (used1 - used0) / n
    b.rows += [
        Row(
            "P5",
            f"server memory per stored (int, float) tuple, {n:,} stored",
            f"{per_tuple:.0f} B (RSS +{fmt_bytes(after - before)})",
            f"Redis list, msgpack values: {redis_per:.0f} B (used_memory; RSS +{fmt_bytes(rss1 - rss0)})",
            per_tuple / redis_per if redis_per > 0 else None,
            f"{REF_BYTES_PER_TUPLE} B",
            "≤ 150 B/tuple",
            per_tuple <= 150,
        ),
        Row(
            "P5",
            f"(filling took {fill_s:.1f} s with {nprocs} client processes)",
            fmt_rate(n / fill_s),
            "",
            None,
        ),
    ]


# ----------------------------------------------------------------------------- P6
def _pypsrun() -> list[str]:
    exe = Path(sys.executable).with_name("pypsrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pastset.commands.run"]


def _timed_run(b: Bench, argv: list[str], procs: int, expect: str) -> float:
    env = clean_env(PSPROCS=str(procs))
    cwd = b.procs.tempdir("pastset-bench-run-")
    start = time.perf_counter()
    proc = b.procs.start("pypsrun", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, text=True)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        b.procs.stop(proc)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or expect not in out:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {out[-500:]} {err[-1500:]}")
    return elapsed


LOCAL_TRIVIAL = (
    "import pastset\n"
    "with pastset.local(procs=1) as pset:\n"
    "    element = pset.enter(('bench-trivial', int))\n"
    "    element.move((1,))\n"
    "    element.observe()\n"
    "print('trivial ok')\n"
)


def p6_pypsrun(b: Bench) -> None:
    """A whole pypsrun of a trivial app, against a bare import of pastset timed in the same rounds;
    the same with pastset.local(); Monte Carlo pi with 1 worker vs 2 on this machine's cores."""
    s = b.sizes
    trivial = [*_pypsrun(), str(HERE / "trivial_app.py")]
    bare = [sys.executable, "-c", "import pastset; print('trivial ok')"]
    local = [sys.executable, "-c", LOCAL_TRIVIAL]
    start = interleave(
        {
            "import": lambda: _timed_run(b, bare, 1, "trivial ok"),
            "pypsrun": lambda: _timed_run(b, trivial, 1, "trivial ok"),
            "local": lambda: _timed_run(b, local, 1, "trivial ok"),
        },
        s.p6_trivial_runs,
    )
    times = start["pypsrun"]
    t_trivial, t_import, t_local = median(times), median(start["import"]), median(start["local"])
    b.rows += [
        Row(
            "P6",
            "trivial pypsrun (join, move, observe, end) over a bare python -c 'import pastset', "
            f"interleaved (median of {len(times)})",
            f"{t_trivial / t_import:.2f}x ({t_trivial:.2f} s / {t_import:.2f} s)",
            f"pastset.local() in python -c: {t_local / t_import:.2f}x ({t_local:.2f} s)",
            t_trivial / t_import,
            "about 4x before the parallel start",
            "≤ 3x",
            t_trivial / t_import <= 3.0,
        ),
    ]
    pi = str(ROOT / "examples" / "mcpiserver.py")
    args = [str(s.p6_bags), str(s.p6_bagsize)]
    got = interleave(
        {
            "one": lambda: _timed_run(b, [*_pypsrun(), pi, "1", *args], 1, "Pi is found"),
            "two": lambda: _timed_run(b, [*_pypsrun(), pi, "2", *args], 2, "Pi is found"),
        },
        s.p6_rounds,
    )
    one, two = median(got["one"]), median(got["two"])
    speedup = one / two
    net = (one - t_trivial) / max(1e-9, two - t_trivial)
    b.rows += [
        Row(
            "P6",
            "pypsrun of a trivial app, start to finish (median of "
            f"{len(times)}: {', '.join(f'{t:.2f}' for t in times)} s)",
            f"{t_trivial:.2f} s",
            "",
            None,
            f"{REF_TRIVIAL_RUN_S} s",
            "≤ 1.0 s",
            t_trivial <= 1.0,
        ),
        Row(
            "P6",
            f"pi speed-up, 2 workers vs 1 (PSPROCS=2/1, {s.p6_bags} bags x {s.p6_bagsize:,}; {_cores()} cores)",
            f"{speedup:.2f}x ({one:.2f} s → {two:.2f} s)",
            f"net of the trivial run's time: {net:.2f}x",
            None,
            "",
            "≥ 1.85x",
            speedup >= 1.85,
        ),
    ]


def _cores() -> int:
    return len(os.sched_getaffinity(0))


# ----------------------------------------------------------------------------- P7
def p7_clients(b: Bench) -> None:
    """4 and 16 client processes, each on its own element (list): total pairs/s vs Redis.

    The bare Pyro5 object's put/get with the same clients is measured as a
    reference, and each server's CPU time (user, system) per pair is recorded.
    """
    s = b.sizes
    services = {"pastset": b.pastset, "redis": b.redis, "pyro": b.pyro}
    for n in s.p7_clients:
        workers: dict[str, list[subprocess.Popen[Any]]] = {name: [] for name in services}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in services}
        try:
            for system, service in services.items():
                for i in range(n):
                    argv = [sys.executable, str(HERE / "helpers.py"), "pairs", system, service.address, RUN]
                    argv.append(f"p7:{n}:{i}")
                    workers[system].append(
                        b.procs.start(
                            f"p7-{system}",
                            argv,
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            env=clean_env(),
                            text=True,
                        )
                    )
            for system, group in workers.items():
                for proc in group:
                    line = read_line(proc.stdout, 120, f"P7 {system} client")
                    if line != "READY":
                        raise RuntimeError(f"P7 {system} client: {line}")

            got = interleave(
                {
                    name: partial(_window, workers[name], services[name].pid, s.p7_window, cpu[name])
                    for name in services
                },
                s.p7_rounds,
            )
        finally:
            for group in workers.values():
                for proc in group:
                    b.procs.stop(proc)
        m = {k: median(v) for k, v in got.items()}
        use = {k: (median([u for u, _ in v]), median([y for _, y in v])) for k, v in cpu.items()}
        ratio = m["pastset"] / m["redis"]
        b.rows += [
            Row(
                "P7",
                f"{n} client processes, one element (list) each: total pairs/s",
                fmt_rate(m["pastset"]),
                f"Redis RPUSH+BLPOP {fmt_rate(m['redis'])}",
                ratio,
                REF_PAIRS_PER_S,
                "≥ 0.5x Redis and ≥ 15k/s",
                ratio >= 0.5 and m["pastset"] >= REF_PAIRS_PER_S_LOW,
            ),
            Row(
                "P7",
                f"  reference: bare Pyro5 put+get pairs, {n} clients",
                fmt_rate(m["pastset"]),
                f"Pyro5 {fmt_rate(m['pyro'])}",
                m["pastset"] / m["pyro"],
            ),
            Row(
                "P7",
                f"  server CPU per pair, {n} clients (user + system)",
                f"{use['pastset'][0]:.0f} + {use['pastset'][1]:.0f} µs",
                f"Redis {use['redis'][0]:.0f} + {use['redis'][1]:.0f} µs; "
                f"Pyro5 {use['pyro'][0]:.0f} + {use['pyro'][1]:.0f} µs",
                sum(use["pastset"]) / max(1e-9, sum(use["redis"])),
            ),
        ]
        b.facts[f"p7-{n}"] = {"rate": m, "cpu": use}


def _window(group: list[subprocess.Popen[Any]], pid: int, seconds: float, cpu: list[tuple[float, float]]) -> float:
    """One P7 round: every client in ``group`` does pairs in the same window; total pairs/s.

    Appends the server's (user, system) CPU µs per pair in that window to ``cpu``.
    """
    start = time.time() + 0.2
    end = start + seconds
    for proc in group:
        proc.stdin.write(f"GO {start} {end}\n")
        proc.stdin.flush()
    while time.time() < start:
        time.sleep(0.005)
    before = _cpu_split(pid)
    total = 0
    for proc in group:
        line = read_line(proc.stdout, seconds + 60, "P7 client")
        total += int(line.split()[1])
    after = _cpu_split(pid)
    cpu.append(((after[0] - before[0]) / total * 1e6, (after[1] - before[1]) / total * 1e6))
    return total / (end - start)


def _cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


# ----------------------------------------------------------------------------- J
def journal_cost(b: Bench) -> None:
    """The price of PSJOURNAL: move+observe pairs on a plain server, a journaling one, and one that fsyncs.

    Redis with its append-only file (``appendfsync always``) is the reference for the fsync case.
    """
    import pastset

    s = b.sizes
    journal_dir = b.procs.tempdir("pastset-bench-journal-")
    plain = b.pset().enter(("bench-j", int, float))
    servers = {
        "journal": start_pastset(b.procs, RUN, PSJOURNAL=f"{journal_dir}/write"),
        "journal+fsync": start_pastset(b.procs, RUN, PSJOURNAL=f"{journal_dir}/fsync", PSJOURNALSYNC="yes"),
    }
    elements = {"plain": plain}
    for name, server in servers.items():
        elements[name] = pastset.PastSet(run=RUN, ns=server.address).enter(("bench-j", int, float))
    r = b.redis_client()
    r.config_set("appendonly", "yes")
    r.config_set("appendfsync", "always")

    def pair(element: Any) -> None:
        element.move(SMALL)
        element.observe()

    def redis_pair() -> None:
        r.rpush("j", msgpack.packb(SMALL))
        r.blpop(["j"])

    fns: dict[str, Callable[[], None]] = {name: partial(pair, e) for name, e in elements.items()}
    fns["redis-aof-always"] = redis_pair
    pairs = max(50, s.p1_pairs // 5)
    cpu = b.placements()[0][1]
    pids = [*b.server_pids(), *(srv.pid for srv in servers.values())]
    with placed(cpu, cpu, pids):
        for fn in fns.values():
            _warm(fn)
        got = interleave({k: (lambda fn=fn: median_us(fn, pairs)) for k, fn in fns.items()}, s.rounds)
    r.config_set("appendonly", "no")
    r.close()
    m = {k: median(v) for k, v in got.items()}
    b.rows += [
        Row("J", "move+observe pair, journal off (PSJOURNAL unset); one core", fmt_us(m["plain"]), "", None),
        Row(
            "J",
            "  with PSJOURNAL (write(2) of every change before the reply)",
            fmt_us(m["journal"]),
            f"journal off {fmt_us(m['plain'])}",
            m["journal"] / m["plain"],
        ),
        Row(
            "J",
            "  with PSJOURNAL and PSJOURNALSYNC=yes (fsync of every change)",
            fmt_us(m["journal+fsync"]),
            f"Redis AOF appendfsync always {fmt_us(m['redis-aof-always'])}",
            m["journal+fsync"] / m["redis-aof-always"],
        ),
    ]
    for server in servers.values():
        b.procs.stop(server.proc)


MEASURES: dict[str, Callable[[Bench], None]] = {
    "P1": p1_pair,
    "P2": p2_bulk,
    "P3": p3_large,
    "P4": p4_blocked,
    "P5": p5_memory,
    "P6": p6_pypsrun,
    "P7": p7_clients,
    "J": journal_cost,
}
