"""The server's side of a Redis store (pastset.transport.redis_admin): statistics, quiet, hand-back, end, purge.

Elements are made through real client links (pastset.transport.redis_store)
on the session's redis-server on loopback; each test uses a run of its own
and removes its keys.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pastset.errors import ConfigurationError, PastSetConnectionError
from pastset.transport.redis_address import StoreAddress, parse_store
from pastset.transport.redis_admin import StoreAdmin, count_keys, purge, run_names
from pastset.transport.redis_scripts import Keys
from pastset.transport.redis_store import RedisLink, RedisStore

pytestmark = pytest.mark.timeout(60)


class Run:
    def __init__(self, address: StoreAddress) -> None:
        self.name = f"adm-{uuid.uuid4().hex[:8]}"
        self.address = address
        self.admin = StoreAdmin(address, self.name)
        self.stores: list[RedisStore] = []

    def link(self, task: str = "") -> RedisLink:
        store = RedisStore(self.address, self.name, task)
        self.stores.append(store)
        return store.link()

    def close(self) -> None:
        for store in self.stores:
            store.close()
        self.admin.purge()
        self.admin.close()


@pytest.fixture
def run(redis_single: Any) -> Iterator[Run]:
    address = parse_store(redis_single.url)
    assert address is not None
    made = Run(address)
    try:
        yield made
    finally:
        made.close()


def ok(reply: tuple) -> Any:
    assert reply[0] == 0, reply
    return reply[1]


def until(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll ``check`` until it is true (bounded); its last value."""
    deadline = time.monotonic() + within
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def test_an_unreachable_store_is_a_configuration_error_with_the_fix() -> None:
    address = parse_store("redis://u:hunter2@127.0.0.1:1")
    assert address is not None
    with pytest.raises(ConfigurationError) as raised:
        StoreAdmin(address, "nobody")
    text = str(raised.value)
    assert text.startswith("cannot reach the Redis store redis://u@127.0.0.1:1 (PSSTORE): ")
    assert "redis-server runs there" in text and "hunter2" not in text


def test_describe_shows_each_live_element_as_the_built_in_server_does(run: Run) -> None:
    link = run.link()
    a = ok(link.call(("enter", ("a", int), None, False)))[0]
    b = ok(link.call(("enter", ("b", str), None, False)))[0]
    ok(link.call(("delta", b, 3)))
    for i in range(3):
        ok(link.call(("move", a, ("a", i), None)))
    ok(link.call(("observe", a, -1, None)))
    rows = {row["id"]: row for row in run.admin.describe()}
    assert rows[a] == {
        "id": a,
        "template": repr(("a", int)),
        "first": 1,
        "last": 3,
        "delta": None,
        "stored": rows[a]["stored"],
        "xfunction": "",
    }
    assert rows[a]["stored"] >= 2
    assert (rows[b]["first"], rows[b]["last"], rows[b]["delta"]) == (0, 0, 3)
    ok(link.call(("delelement", ("b", str))))
    assert [row["id"] for row in run.admin.describe()] == [a]


def test_the_run_is_quiet_only_while_every_running_task_waits_with_no_way_on(run: Run) -> None:
    eid = ok(run.link().call(("enter", ("q", int), None, False)))[0]
    assert not run.admin.quiet({"t1"}), "t1 is not blocked"
    got: list[tuple] = []
    waiter = threading.Thread(target=lambda: got.append(run.link("t1").call(("observe", eid, -1, 20.0))))
    waiter.start()
    try:
        assert until(lambda: run.admin.quiet({"t1"})), "t1 waits on an empty element"
        assert not run.admin.quiet({"t1", "t2"}), "t2 still runs"
        ok(run.link().call(("move", eid, ("q", 1), None)))
    finally:
        waiter.join(20)
    assert got == [(0, ("q", 1))]
    assert not run.admin.quiet({"t1"})


def test_leases_of_a_connection_that_is_gone_are_handed_back_once(run: Run) -> None:
    mover = run.link()
    eid = ok(mover.call(("enter", ("lease", int), None, True)))[0]
    ok(mover.call(("move", eid, ("lease", 7), None)))
    taker = run.link()
    assert ok(taker.call(("observe", eid, -1, None))) == ("lease", 7)
    assert run.admin.hand_back() == 0, "its observer is still connected"
    taker.close()
    assert until(run.admin.hand_back) == 1
    assert run.admin.hand_back() == 0
    assert ok(run.link().call(("observe", eid, -1, 5.0))) == ("lease", 7)


def test_the_end_wakes_a_blocked_caller_with_the_reason_and_removes_the_keys(run: Run) -> None:
    eid = ok(run.link().call(("enter", ("end", int), None, False)))[0]
    got: list[tuple] = []
    waiter = threading.Thread(target=lambda: got.append(run.link("t1").call(("observe", eid, -1, 20.0))))
    waiter.start()
    try:
        assert until(lambda: run.admin.quiet({"t1"}))
        run.admin.end("the operator stopped it")
    finally:
        waiter.join(20)
    assert got and got[0][:2] == (1, "RunEndedError") and "the operator stopped it" in got[0][2]
    assert count_keys(run.admin.client, run.admin.keys, False) == 0
    assert run.name not in run_names(run.admin.client, False)


def test_an_end_that_keeps_the_keys_leaves_them_for_pypsclean(run: Run) -> None:
    link = run.link()
    eid = ok(link.call(("enter", ("kept", int), None, False)))[0]
    ok(link.call(("move", eid, ("kept", 1), None)))
    run.admin.end("crashed", keep=True)
    kept = count_keys(run.admin.client, run.admin.keys, False)
    assert kept > 0 and run.name in run_names(run.admin.client, False)
    assert run.link().call(("first", eid))[:2] == (1, "RunEndedError"), "kept, but ended"
    assert purge(run.admin.client, run.admin.keys, False) == kept
    assert count_keys(run.admin.client, run.admin.keys, False) == 0


def test_purge_and_run_names_see_only_their_own_run(run: Run, redis_single: Any) -> None:
    ok(run.link().call(("enter", ("mine", int), None, False)))
    other = Keys(run.name + "x")
    client = redis_single.client()
    try:
        client.hset(other.registry, "t", "1:0")
        assert {run.name, run.name + "x"} <= run_names(client, False)
        mine = count_keys(client, Keys(run.name), False)
        assert mine > 0
        assert run.admin.purge() == mine
        assert count_keys(client, Keys(run.name), False) == 0
        assert count_keys(client, other, False) == 1
    finally:
        client.delete(other.registry)
        client.close()


def test_a_wait_of_a_connection_that_is_gone_does_not_count(run: Run) -> None:
    eid = ok(run.link().call(("enter", ("gone", int), None, False)))[0]
    blocked = run.link("t1")
    failed: list[BaseException] = []

    def wait() -> None:
        try:
            blocked.call(("observe", eid, -1, 20.0))
        except PastSetConnectionError as err:
            failed.append(err)

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        assert until(lambda: run.admin.quiet({"t1"}))
        [mine] = [c for c in run.admin.client.client_list() if c.get("name") == blocked.owner]
        run.admin.client.client_kill_filter(_id=mine["id"])  # its connection drops while it waits
    finally:
        waiter.join(20)
    assert failed, "the waiter lost its connection"
    assert run.admin.client.hlen(run.admin.keys.key(eid, "wt")) == 1, "its wait is still recorded in Redis"
    assert not run.admin.quiet({"t1"}), "but a wait of a closed connection is nobody waiting"
