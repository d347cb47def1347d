"""What only a Redis store shows: its keys, their removal, refused X-functions, statistics, settings."""

from __future__ import annotations

import pytest
from conftest import start_server, stop_server

import pastset
from pastset.errors import ConfigurationError
from pastset.transport.redis_store import RedisStore, parse_store

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["redis", "cluster"])
def redis_store(request, tmp_path, monkeypatch):
    """A server with a Redis store, and a redis-py client on that store."""
    kind = request.param
    backing = request.getfixturevalue("redis_single" if kind == "redis" else "redis_cluster")
    srv = start_server(tmp_path, store=backing.url)
    monkeypatch.setenv("PSNS", srv.address)
    monkeypatch.setenv("PSRUN", srv.run)
    monkeypatch.delenv("PSSTORE", raising=False)
    if kind == "redis":
        client = backing.client()
    else:
        from redis.cluster import ClusterNode, RedisCluster

        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in backing.nodes])
    try:
        yield srv, client, kind
    finally:
        if srv.proc.poll() is None:
            stop_server(srv)
        client.close()


def _keys(client, run, cluster):
    found = set()
    for pattern in (f"{{ps:{run}}}*", f"{{ps:{run}:e*"):
        if cluster:
            for node in client.get_primaries():
                found.update(client.scan_iter(match=pattern, target_nodes=node))
        else:
            found.update(client.scan_iter(match=pattern))
    return found


def test_tuples_live_in_redis_and_the_run_end_removes_its_keys(redis_store):
    srv, client, kind = redis_store
    e = pastset.PastSet().enter(("inredis", int))
    for i in range(10):
        e.move((i,))
    keys = _keys(client, srv.run, kind == "cluster")
    data_key = f"{{ps:{srv.run}:e1}}:h".encode()
    assert data_key in keys
    assert client.hlen(data_key) == 10  # the tuples are really in Redis, where redis-cli sees them
    assert client.llen(f"{{ps:{srv.run}:e1}}:q".encode()) == 10
    assert e.observe() == (0,)
    assert client.llen(f"{{ps:{srv.run}:e1}}:q".encode()) == 9
    stop_server(srv)
    assert _keys(client, srv.run, kind == "cluster") == set()


def test_elements_of_different_templates_spread_over_the_cluster(redis_cluster, tmp_path, monkeypatch):
    srv = start_server(tmp_path, store=redis_cluster.url)
    monkeypatch.setenv("PSNS", srv.address)
    monkeypatch.setenv("PSRUN", srv.run)
    try:
        pset = pastset.PastSet()
        for i in range(24):
            pset.enter((f"spread{i}", int)).move((i,))
        holders = set()
        for node in redis_cluster.primaries():
            if any(True for _ in node.client().scan_iter(match=f"{{ps:{srv.run}:e*}}:h")):
                holders.add(node.port)
        assert len(holders) == 3  # each element's keys share a hash tag; elements spread over the masters
    finally:
        stop_server(srv)


def test_xfunction_on_a_redis_store_is_refused_clearly(redis_store):
    pset = pastset.PastSet()
    with pytest.raises(ConfigurationError, match="X-functions run Python inside the built-in server.*PSSTORE empty"):
        pset.enter(("x", int), xfunction="typecast")
    e = pset.enter(("x", int))  # nothing half-made: the same template still enters, without an X-function
    e.move((1,))
    assert e.observe() == (1,)


def test_the_server_reads_element_statistics_from_redis(redis_store):
    srv, _, _ = redis_store
    e = pastset.PastSet().enter(("stats", int))
    e.delta(7)
    for i in range(3):
        e.move((i,))
    e.observe()
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "pastset.commands.manage", "elements", "--ns", srv.address, "--run", srv.run],
        env=srv.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    line = next(row for row in out.stdout.splitlines() if "stats" in row)
    assert "1" in line.split() and "3" in line.split() and "7" in line.split(), out.stdout


def test_store_addresses_parse_with_credentials_and_clear_errors():
    one = parse_store("rediss://alice:s%40cret@db.example:6380/2?ssl_ca_certs=/etc/ca.pem")
    assert one is not None and one.tls and not one.cluster
    assert (one.username, one.password, one.db, one.nodes) == ("alice", "s@cret", 2, (("db.example", 6380),))
    assert "s@cret" not in one.redacted() and "s%40cret" not in one.redacted()
    many = parse_store("redis+cluster://h1:7000,h2:7001")
    assert many is not None and many.cluster and many.nodes == (("h1", 7000), ("h2", 7001))
    assert parse_store("") is None
    waiting = parse_store("redis+cluster://h1:7000?wait=1&wait_ms=250")
    assert waiting is not None and (waiting.wait, waiting.wait_ms, waiting.options) == (1, 250, {})
    assert parse_store(waiting.redacted()) == waiting  # the run hands the setting on to its clients
    for bad, why in [
        ("mysql://h:1", "redis://HOST:PORT"),
        ("redis://h", "is not HOST:PORT"),
        ("redis://h:1,h:2", "use redis\\+cluster://"),
        ("redis+cluster://h:1/3", "only database 0"),
        ("redis://h:1?colour=blue", "unknown option"),
        ("redis://h:1?wait=two", "wait='two' must be a whole number"),
        ("redis://h:1?wait=1&wait_ms=0", "wait_ms='0' must be a whole number of at least 1"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_store(bad)


def test_a_bad_store_is_refused_by_the_server_with_the_fix(tmp_path):
    with pytest.raises(RuntimeError, match="server did not start"):
        start_server(tmp_path, store="redis://127.0.0.1:1")


def test_keys_kept_by_setting_and_pypsclean_removes_a_dead_runs_keys(redis_single, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    monkeypatch.setenv("PSSTOREKEEP", "yes")
    srv = start_server(tmp_path, store=redis_single.url)
    monkeypatch.setenv("PSNS", srv.address)
    monkeypatch.setenv("PSRUN", srv.run)
    e = pastset.PastSet().enter(("kept", int))
    e.move((1,))
    stop_server(srv)
    client = redis_single.client()
    assert _keys(client, srv.run, False)  # PSSTOREKEEP=yes: the run's keys outlive it
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    env["PSSTORE"] = redis_single.url
    clean = [sys.executable, "-m", "pastset.commands.clean", "--here", "--run", srv.run]
    dry = subprocess.run([*clean, "-n"], env=env, capture_output=True, text=True, timeout=60)
    assert "would remove" in dry.stdout and _keys(client, srv.run, False), dry.stdout + dry.stderr
    out = subprocess.run(clean, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "removed" in out.stdout, out.stdout + out.stderr
    assert _keys(client, srv.run, False) == set()


def test_a_request_sent_again_after_a_failover_takes_effect_once(redis_cluster, tmp_path):
    """A cluster request whose reply was lost is sent again with its number: a move runs once, an observe
    gets back the tuple it took (not the next one, which would lose the first)."""
    srv = start_server(tmp_path, store=redis_cluster.url)
    store = RedisStore(parse_store(redis_cluster.url), srv.run)
    try:
        link = store.link()
        eid = link.call(("enter", ("again", int)))[1][0]
        link._seq, link._retry = 100, False
        link.move(eid, (1,))
        link._retry = True  # what call() does when the connection broke before the reply
        link.move(eid, (1,))
        assert link.call(("last", eid)) == (0, 1)
        assert link.call(("move", eid, (2,))) == (0, None)
        link._seq, link._retry = 200, False
        assert link.observe(eid) == (1,)
        link._retry = True
        assert link.observe(eid) == (1,)
        assert link.call(("first", eid)) == (0, 1)
        assert link.call(("observe", eid)) == (0, (2,))
        pattern = store.keys.key(eid, "f:*")
        held = [key for node in redis_cluster.primaries() for key in node.client().scan_iter(match=pattern)]
        assert len(held) == 1  # the earlier observe's in-flight list went with the next observe
    finally:
        store.close()
        stop_server(srv)


def test_writes_wait_for_the_replicas_the_store_asks_for(redis_single, redis_cluster, tmp_path, caplog):
    """``?wait=1`` sends WAIT after each write: a Redis with no replica answers 0 and the client says so; a
    cluster whose masters have no replicas is not waited on."""
    srv = start_server(tmp_path, store=redis_single.url)
    try:
        for url, warned in ((redis_single.url, True), (redis_cluster.url, False)):
            store = RedisStore(parse_store(url + "?wait=1&wait_ms=50"), srv.run + ("c" if not warned else ""))
            try:
                caplog.clear()
                link = store.link()
                eid = link.call(("enter", ("waited", int)))[1][0]
                assert link.call(("move", eid, (5,))) == (0, None)
                assert link.call(("observe", eid)) == (0, (5,))
                said = [r.getMessage() for r in caplog.records if "replica" in r.getMessage()]
                assert bool(said) == warned, said
                if warned:
                    assert "reached 0 of 1 replica(s) within 50 ms" in said[0]
                link.call(("delelement", eid))
            finally:
                store.close()
    finally:
        stop_server(srv)
