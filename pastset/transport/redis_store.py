"""Elements held in Redis or a Redis Cluster (``PSSTORE``), with the PastSet contract intact.

With ``PSSTORE=redis://HOST:PORT[/DB]`` (``rediss://`` for TLS) or
``PSSTORE=redis+cluster://HOST:PORT[,HOST:PORT...]`` (``rediss+cluster://``),
every client sends its element operations straight to Redis through redis-py;
the PastSet server keeps the name service, the scheduler, control and the web
page, and reads element statistics from Redis (:mod:`pastset.transport.redis_admin`).

A :class:`RedisLink` is one thread's connection and answers the same requests
as the server's ``SpaceService``: ``call((op, *args))`` returns ``(0, result)``
or ``(1, error_class_name, message, None)``, so the client treats it as one more
link.  The operations that must be atomic are Lua scripts
(``redis_store.lua``, loaded once and run by SHA) on one element's keys, which
share a hash tag and therefore one slot of a cluster.

How the contract maps onto Redis (details in ``redis_store.lua``):

* unobserved tuples are a list ``q``; an unindexed observe is ``BLPOP`` on it,
  so Redis itself hands each tuple to exactly one blocked client, in the order
  they blocked, and a client whose connection dies while it waits takes
  nothing.  ``first`` is ``last - LLEN q``.
* every tuple also sits in a hash by index until ``axe`` frees it, for indexed
  observes; a caller waiting for ``last > i`` blocks on a private wake-up key
  that the next move pushes to.
* a move that delta holds back becomes a ticket in a FIFO list; whoever makes
  room (the script that runs on the observer's connection right after its
  ``BLPOP``, a larger delta) appends the tickets in order and wakes their
  movers.  A blocked mover also retries the release once a second, so a room
  maker that died between its two commands delays it by at most that.
* leases: a leased observe is ``BLMOVE`` into a list owned by the observing
  connection (named by ``CLIENT SETNAME``); the server hands the tuples of
  owners that are no longer connected back to the element (``hand_back``).
  An ``ack`` with a result moves the result at most once per job (a token per
  leased tuple), so a worker killed between the two steps duplicates nothing.
* ``delelement`` marks the element deleted, frees it, and wakes every blocked
  caller (a tombstone in ``q``, a word on every wake-up key).

X-functions run Python on the server and cannot run inside Redis: entering an
element with one is refused with a clear error.

This module holds the operations; what they stand on lives beside it, and every
name is still importable from here: the ``PSSTORE`` address and
:func:`connect` (:mod:`pastset.transport.redis_address`), the keys and scripts
a run keeps in Redis (:mod:`pastset.transport.redis_scripts`), and the
connection that numbers requests so that one sent again after a cluster
failover takes effect once, and waits for replicas
(:mod:`pastset.transport.redis_connection`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from pastset import wire
from pastset.core.element import check_template, deleted_error
from pastset.errors import (
    BY_NAME,
    ConfigurationError,
    ElementDeletedError,
    ExpiredError,
    PastSetTimeoutError,
    PastSetTypeError,
    PastSetValueError,
)

# ``NAME as NAME``: names this module held before the split, re-exported so that their importers keep working.
from pastset.transport.redis_address import FAILOVER_RETRIES as FAILOVER_RETRIES
from pastset.transport.redis_address import SCHEMES as SCHEMES
from pastset.transport.redis_address import StoreAddress, _redis, connect, parse_store
from pastset.transport.redis_connection import FAILOVER_WAIT as FAILOVER_WAIT
from pastset.transport.redis_connection import StoreConnection
from pastset.transport.redis_scripts import READ_ONLY as READ_ONLY
from pastset.transport.redis_scripts import SCRIPTS as SCRIPTS
from pastset.transport.redis_scripts import Keys, _raise
from pastset.transport.redis_scripts import _scripts as _scripts

__all__ = ["OPS", "Keys", "RedisLink", "RedisStore", "StoreAddress", "connect", "parse_store"]

log = logging.getLogger(__name__)

#: The requests a Redis store answers; the others (spawn, halt, ...) still go to the server.
OPS = frozenset(
    {"enter", "move", "observe", "first", "last", "template", "delta", "axe", "delelement", "ack"}
    | {"move_many", "observe_many"}
)

#: A blocked mover re-checks for room this often (see the module's docstring).
RETRY = 1.0


class RedisStore:
    """The Redis store of one ``PastSet`` handle: the address, the run's keys, and one link per thread."""

    def __init__(self, address: StoreAddress, run: str, task: str = "") -> None:
        self.address = address
        self.keys = Keys(run)
        #: The spawned task this process runs: its waits are recorded, so the run sees when it is stuck.
        self.task = task
        self.leased: dict[int, bool] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._links: list[RedisLink] = []

    def link(self) -> RedisLink:
        """This thread's link (made on first use)."""
        made = getattr(self._local, "link", None)
        if made is None:
            made = self._local.link = RedisLink(self)
            with self._lock:
                self._links.append(made)
        return made

    def close(self) -> None:
        """Close every thread's connection (their leases then go back to the element)."""
        with self._lock:
            links, self._links = self._links, []
        for each in links:
            each.close()
        self._local = threading.local()


class RedisLink(StoreConnection):
    """One thread's connection to the store; :meth:`call` answers SpaceService's requests.

    Sending, numbering and resending the requests is :class:`StoreConnection`'s; this class adds what each
    operation does in Redis.
    """

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._waits = 0
        super().__init__(store.address, store.keys)
        self._ops = {
            "enter": self.enter,
            "move": self.move,
            "observe": self.observe,
            "first": lambda eid: self._info(eid, "first"),
            "last": lambda eid: self._info(eid, "last"),
            "template": lambda eid: wire.decode(self._info(eid, "template")),
            "delta": self.delta,
            "axe": self.axe,
            "delelement": self.delelement,
            "ack": self.ack,
            "move_many": self.move_many,
            "observe_many": self.observe_many,
        }

    @contextlib.contextmanager
    def _waiting(self, eid: int, what: str) -> Iterator[None]:
        """Record that this task waits (for the run's "is it stuck?" check) while the block runs."""
        if not self.store.task:
            yield
            return
        key = self.keys.key(eid, "wt")
        self.client.hset(key, self.owner, f"{self.store.task}|{what}")
        try:
            yield
        finally:
            self.client.hdel(key, self.owner)

    def _waiter(self, eid: int) -> str:
        self._waits += 1
        return self.keys.key(eid, f"w:{self.owner}:{self._waits}")

    # ----------------------------------------------------------- operations
    def enter(self, template: tuple, xfunction: str | None = None, leases: bool = False) -> tuple[int, tuple, bool]:
        """Bind to (or create) the element for ``template``."""
        check_template(template)
        if xfunction is not None:
            raise ConfigurationError(
                f"X-function {xfunction!r}: X-functions run Python inside the built-in server and cannot run "
                f"in the Redis store ({self.store.address.redacted()}); enter the element without one, or run "
                "with PSSTORE empty (the built-in server)"
            )
        tkey = wire.encode(template)
        got = self._run("enter", self.keys.registry, tkey, int(bool(leases)))
        eid_text, _, flag = got.decode().partition(":")
        eid = int(eid_text)
        leased = self._run("init", self.keys.meta(eid), tkey, flag) == b"1"
        self.store.leased[eid] = leased
        return eid, template, leased

    def _is_leased(self, eid: int) -> bool:
        leased = self.store.leased.get(eid)
        if leased is None:
            leased = self.store.leased[eid] = self._info(eid, "stats")[5] == b"1"
        return leased

    def _info(self, eid: int, what: str) -> Any:
        return self._run("info", self.keys.meta(eid), what)

    def move(self, eid: int, data: Any, timeout: float | None = None) -> None:
        """Append one tuple; block while delta leaves no room."""
        self._move(eid, [wire.encode(data)], timeout)

    def move_many(self, eid: int, tuples: list[Any], timeout: float | None = None) -> None:
        """Append tuples in order (delta applies to each)."""
        if not isinstance(tuples, (list, tuple)):
            raise PastSetTypeError(f"move_many takes a list of tuples, got {type(tuples).__name__}")
        if tuples:
            self._move(eid, [wire.encode(t) for t in tuples], timeout)

    def _move(self, eid: int, payloads: list[bytes], timeout: float | None, token: str = "") -> None:
        wait = self._waiter(eid)
        if token:
            tickets = self._run("move_once", self.keys.meta(eid), token, wait, payloads[0])
        else:
            # On a cluster a move carries this connection's request number: sent again after a failover, it
            # takes effect once (the script remembers the last number it ran per connection).
            tickets = self._run("move", self.keys.meta(eid), wait, self._request_id(), *payloads)
        if tickets:
            with self._waiting(eid, "m"):
                self._wait_tickets(eid, wait, tickets, timeout, token)

    def _wait_tickets(self, eid: int, wait: str, tickets: list[Any], timeout: float | None, token: str) -> None:
        until = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            step = RETRY if until is None else min(RETRY, until - time.monotonic())
            got = self.client.blpop([wait], timeout=max(step, 0.001)) if step > 0 else None
            if got is not None:
                if got[1] == b"done":
                    return
                self._info(eid, "last")  # raises the deletion's error
                continue
            self._run("release", self.keys.meta(eid), 0, "", "")
            if until is not None and time.monotonic() >= until:
                if self._run("cancel", self.keys.meta(eid), token, *tickets) == 0:
                    return  # released meanwhile: the move completed
                raise PastSetTimeoutError(f"move timed out after {timeout} s: delta left no room")

    def observe(self, eid: int, index: int = -1, timeout: float | None = None) -> Any:
        """Unindexed: take the oldest unobserved tuple; indexed: read tuple ``index``."""
        if index < 0:
            return self._take(eid, 1, timeout)[0]
        until = None if timeout is None else time.monotonic() + max(0.0, timeout)
        meta = self.keys.meta(eid)
        while True:
            wait = self._waiter(eid)
            try:
                got = self._run("read", meta, index, wait)
            except ExpiredError as err:
                template = wire.decode(self._info(eid, "template"))
                raise ExpiredError(
                    f"tuple {index} of element {template!r} was freed by axe; the oldest tuple still stored is {err}"
                ) from None
            if got[0] == 1:
                return wire.decode(got[1])
            left = None if until is None else until - time.monotonic()
            if left is not None and left <= 0:
                raise PastSetTimeoutError(f"observe({index}) timed out after {timeout} s")
            with self._waiting(eid, f"i:{index}"):
                self.client.blpop([wait], timeout=0 if left is None else max(left, 0.001))

    def observe_many(self, eid: int, count: int, timeout: float | None = None) -> list[Any]:
        """Take up to ``count`` unobserved tuples, at least one."""
        if count < 1:
            raise PastSetValueError(f"observe_many needs a count of at least 1, got {count}")
        return self._take(eid, count, timeout)

    def _take(self, eid: int, count: int, timeout: float | None) -> list[Any]:
        redis = _redis()
        leased = self._is_leased(eid)
        meta, queue = self.keys.meta(eid), self.keys.key(eid, "q")
        owner = self.owner if leased else ""
        block = 0 if timeout is None else max(timeout, 0.001)
        release = self.scripts["release"]
        # On a cluster an unindexed observe moves its tuples into a list of its own, kept until the next
        # observe of this element: sent again after a failover, it finds them there instead of taking others.
        commands: list[tuple[Any, ...]]
        if leased:
            inflight, commands, held = "", [], None
        else:
            inflight, commands, held = self._inflight_list(eid)
        if held:
            return self._decoded(held)
        if self.store.task:
            commands.append(("HSET", self.keys.key(eid, "wt"), self.owner, f"{self.store.task}|o"))
        if leased:
            commands.append(("BLMOVE", queue, self.keys.key(eid, f"p:{owner}"), "LEFT", "RIGHT", block))
        elif inflight:
            commands.append(("BLMOVE", queue, self.keys.key(eid, inflight), "LEFT", "RIGHT", block))
        else:
            commands.append(("BLPOP", queue, block))
        # The release runs on this connection right after the pop: the room it made lets blocked moves in.
        mark = self.owner if self.store.task else ""
        commands.append(("EVALSHA", release.sha, 1, meta, count - 1, owner, mark, inflight))
        first, more = self._send_two(commands, meta, write=True)[-2:]
        self._hold_inflight(eid, inflight)
        if isinstance(first, Exception):
            raise first
        if isinstance(more, redis.exceptions.NoScriptError):
            try:
                more = release(keys=[meta], args=[count - 1, owner, mark, inflight])  # loads it, for next time
            except redis.ResponseError as err:
                more = err
        if first is None:
            if isinstance(more, redis.ResponseError):
                _raise(more)
            raise PastSetTimeoutError(f"observe timed out after {timeout} s: no tuple arrived")
        item = first if leased or inflight else first[1]
        return self._decoded([item] + (more if isinstance(more, list) else []))

    @staticmethod
    def _decoded(items: list[bytes]) -> list[Any]:
        """The tuples of ``items`` ("JOB:bytes"); a deletion's mark raises its error unless tuples came first."""
        out: list[Any] = []
        for each in items:
            job, _, data = each.partition(b":")
            if job == b"D":
                if out:
                    break
                cls = BY_NAME.get(data.split(b" ", 1)[0].decode(), ElementDeletedError)
                raise cls(data.partition(b" ")[2].decode())
            out.append(wire.decode(data))
        return out

    def delta(self, eid: int, value: int | None = None) -> int | None:
        """Read, or set and return, delta."""
        got = self._run("delta", self.keys.meta(eid), "" if value is None else str(value))
        return None if got in (b"", None) else int(got)

    def axe(self, eid: int, index: int) -> None:
        """Free stored tuples below ``index`` that were observed."""
        self._run("axe", self.keys.meta(eid), index)

    def delelement(self, target: int | tuple) -> None:
        """Delete an element now: old handles fail, blocked callers wake with ElementDeletedError."""
        if isinstance(target, tuple):
            got = self.client.hget(self.keys.registry, wire.encode(check_template(target)))
            if got is None:
                return
            eid = int(got.decode().partition(":")[0])
        else:
            eid = target
        tkey = self._info(eid, "template")
        reason = f"ElementDeletedError {deleted_error(wire.decode(tkey))}"
        self._run("delete", self.keys.meta(eid), reason)
        self._run("forget", self.keys.registry, tkey, eid)

    def ack(self, eid: int, result_eid: int | None = None, result: Any = None, timeout: float | None = None) -> None:
        """Acknowledge this connection's oldest lease of ``eid``, moving ``result`` first (at most once)."""
        if result_eid is not None:
            payload = wire.encode(result)
            job = self._run("oldest_lease", self.keys.meta(eid), self.owner)
            self._move(result_eid, [payload], timeout, token=f"{eid}:{job.decode()}")
        self._run("ack", self.keys.meta(eid), self.owner)
