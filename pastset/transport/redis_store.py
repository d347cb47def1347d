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
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote

from pastset import wire
from pastset.core.element import check_template, deleted_error
from pastset.errors import (
    BY_NAME,
    ConfigurationError,
    ElementDeletedError,
    ExpiredError,
    PastSetConnectionError,
    PastSetError,
    PastSetTimeoutError,
    PastSetTypeError,
    PastSetValueError,
    RemoteError,
)

__all__ = ["OPS", "Keys", "RedisLink", "RedisStore", "StoreAddress", "connect", "parse_store"]

log = logging.getLogger(__name__)

#: The requests a Redis store answers; the others (spawn, halt, ...) still go to the server.
OPS = frozenset(
    {"enter", "move", "observe", "first", "last", "template", "delta", "axe", "delelement", "ack"}
    | {"move_many", "observe_many"}
)

SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")
#: Scripts that change nothing: they never wait for replicas.
READ_ONLY = frozenset({"info", "read", "oldest_lease"})
#: A blocked mover re-checks for room this often (see the module's docstring).
RETRY = 1.0
#: Attempts of a cluster command while a failover runs (backing off to 0.5 s: about 15 s in all).
FAILOVER_RETRIES = 40
#: How long a request is tried again while a cluster fails over before the caller gets a connection error.
FAILOVER_WAIT = 30.0


@dataclass(frozen=True)
class StoreAddress:
    """A parsed PSSTORE: where Redis is and how to log in (the password never shown)."""

    cluster: bool
    tls: bool
    nodes: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None
    options: dict[str, str]
    #: Replicas each write must reach before the operation returns (``?wait=N``); 0: none (Redis's default).
    wait: int = 0
    #: How long a write waits for them, in milliseconds (``?wait_ms=T``), before it returns anyway with a warning.
    wait_ms: int = 1000

    def redacted(self) -> str:
        """The address without the password, safe to show and to hand to clients."""
        scheme = ("rediss" if self.tls else "redis") + ("+cluster" if self.cluster else "")
        user = f"{self.username}@" if self.username else ""
        hosts = ",".join(f"{h}:{p}" for h, p in self.nodes)
        db = f"/{self.db}" if self.db and not self.cluster else ""
        shown = dict(self.options)
        if self.wait:
            shown.update(wait=str(self.wait), wait_ms=str(self.wait_ms))
        query = "&".join(f"{k}={v}" for k, v in sorted(shown.items()))
        return f"{scheme}://{user}{hosts}{db}" + (f"?{query}" if query else "")

    def same_place(self, other: StoreAddress) -> bool:
        """True if both name the same Redis (credentials aside)."""
        return (self.cluster, self.tls, self.db) == (other.cluster, other.tls, other.db) and (
            (self.cluster and bool(set(self.nodes) & set(other.nodes))) or self.nodes == other.nodes
        )


def parse_store(text: str) -> StoreAddress | None:
    """Parse a PSSTORE value; None for the built-in server; ValueError saying what is wrong.

    ``redis://[USER[:PASSWORD]@]HOST:PORT[/DB][?ssl_ca_certs=...&ssl_certfile=...&ssl_keyfile=...]``;
    ``redis+cluster://`` takes several ``HOST:PORT`` separated by commas.  ``?wait=N`` makes every
    write wait until N replicas have it (Redis ``WAIT``, at most ``wait_ms``, default 1000 ms), so a
    failover loses no acknowledged operation (doc/reliability.md).  A
    password may also come from ``REDISCLI_AUTH``-style files: keep PSSTORE in an
    ini file or the environment, never on a command line.
    """
    text = text.strip()
    if not text:
        return None
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(
            "must be empty (the built-in server), redis://HOST:PORT[/DB], rediss://..., "
            "or redis+cluster://HOST:PORT[,HOST:PORT...]"
        )
    scheme = scheme.lower()
    rest, _, query = rest.partition("?")
    rest, _, path = rest.partition("/")
    userinfo, at, hosts = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    nodes = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{part.strip() or '(nothing)'!r} is not HOST:PORT")
        nodes.append((host.strip("[]"), int(port)))
    cluster = scheme.endswith("+cluster")
    if not cluster and len(nodes) != 1:
        raise ValueError("redis:// takes one HOST:PORT; use redis+cluster:// for a Redis Cluster")
    db = 0
    if path:
        if cluster or not path.isdigit():
            raise ValueError("the database after '/' must be a number, and a Redis Cluster has only database 0")
        db = int(path)
    allowed = {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "wait", "wait_ms"}
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(allowed))}")
    numbers = {}
    for name, default, low in (("wait", 0, 0), ("wait_ms", 1000, 1)):
        text = options.pop(name, str(default))
        if not text.isdigit() or int(text) < low:
            raise ValueError(f"{name}={text!r} must be a whole number of at least {low}")
        numbers[name] = int(text)
    return StoreAddress(cluster, scheme.startswith("rediss"), tuple(nodes), db, username, password, options, **numbers)


def _redis() -> Any:
    try:
        import redis
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ConfigurationError(
            "PSSTORE names a Redis, but redis-py is not installed; install pastset[redis] (pip install redis)"
        ) from None
    return redis


def connect(address: StoreAddress, name: str | None = None) -> Any:
    """A redis-py client for ``address`` (a RedisCluster for a cluster), its connections named ``name``."""
    redis = _redis()
    kwargs: dict[str, Any] = {
        "username": address.username,
        "password": address.password,
        "client_name": name,
        "socket_timeout": None,
        "socket_connect_timeout": 10,
        "socket_keepalive": True,
    }
    if address.tls:
        kwargs["ssl"] = True
        kwargs.update(address.options)
    if address.cluster:
        from redis.backoff import ExponentialBackoff
        from redis.cluster import ClusterNode, RedisCluster
        from redis.retry import Retry

        # A failover takes the node timeout plus an election: keep retrying for about that long.
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in address.nodes],
            require_full_coverage=True,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), FAILOVER_RETRIES),
            **kwargs,
        )
    host, port = address.nodes[0]
    return redis.Redis(host=host, port=port, db=address.db, single_connection_client=True, **kwargs)


def _scripts() -> dict[str, str]:
    text = resources.files("pastset.transport").joinpath("redis_store.lua").read_text()
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("--! "):
            current = sections.setdefault(line[4:].strip(), [])
        else:
            current.append(line)
    prelude = "\n".join(sections.pop("PRELUDE"))
    return {name: prelude + "\n" + "\n".join(body) for name, body in sections.items()}


SCRIPTS = _scripts()


class Keys:
    """Key names of one run in Redis: ``{ps:RUN}:reg`` and ``{ps:RUN:eID}:*``."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.prefix = f"ps:{run}"
        self.registry = f"{{{self.prefix}}}:reg"

    def meta(self, eid: int) -> str:
        return f"{{{self.prefix}:e{eid}}}:m"

    def key(self, eid: int, part: str) -> str:
        return f"{{{self.prefix}:e{eid}}}:{part}"

    def patterns(self) -> list[str]:
        """SCAN patterns that find every key of this run (and of no other)."""
        return [f"{{{self.prefix}}}*", f"{{{self.prefix}:e*"]


def _raise(err: Exception) -> None:
    """Turn a script's "ERRORCLASS message" reply into that PastSet error."""
    text = str(err)
    name, _, message = text.partition(" ")
    cls = BY_NAME.get(name)
    if cls is None:
        raise RemoteError(f"Redis refused a PastSet operation: {text}") from None
    raise cls(message) from None


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


class RedisLink:
    """One thread's connection to the store; :meth:`call` answers SpaceService's requests."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.keys = store.keys
        self.owner = f"ps-{uuid.uuid4().hex}"
        self._waits = 0
        #: This connection's request number; a request sent again after a failover keeps its number, so the
        #: scripts recognise a move that already took effect and an observe finds the tuple it already took.
        self._seq = 0
        self._retry = False
        #: On a cluster, an unindexed observe takes its tuples into a list of its own ("in flight") that the
        #: next observe of the element clears: element -> that list's key.
        self._inflight: dict[int, str] = {}
        self._short_until = 0.0
        try:
            self.client = connect(store.address, self.owner)
            self.scripts = {name: self.client.register_script(text) for name, text in SCRIPTS.items()}
        except _redis().RedisError as err:
            raise PastSetConnectionError(f"cannot reach the Redis store {store.address.redacted()}: {err}") from None
        self._ops: dict[str, Callable[..., Any]] = {
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

    # ------------------------------------------------------------- the link
    def call(self, message: tuple) -> tuple:
        """Run one request ``(op, *args)``; ``(0, result)`` or ``(1, class, message, None)``."""
        redis = _redis()
        from redis.exceptions import ClusterDownError, TryAgainError

        until = time.monotonic() + FAILOVER_WAIT
        self._seq += 1
        self._retry = False
        while True:
            try:
                return 0, self._ops[message[0]](*message[1:])
            except PastSetError as err:
                return 1, type(err).__name__, str(err), None
            except (redis.ConnectionError, redis.TimeoutError, ClusterDownError, TryAgainError) as err:
                # A cluster in failover: the request is sent again, with the same number, once a replica took
                # over.  Moves and unindexed observes recognise their own earlier attempt (doc/reliability.md).
                if not self.store.address.cluster or time.monotonic() > until:
                    raise PastSetConnectionError(f"lost the connection to the Redis store: {err}") from None
                self._retry = True
                log.warning("Redis store: %s; retrying while the cluster fails over", err)
                time.sleep(0.2)  # a failover has no event to wait on from here: back off, bounded by FAILOVER_WAIT
            except redis.RedisError as err:
                return 1, RemoteError.__name__, f"Redis: {err}", None

    def close(self) -> None:
        """Close the connection (clearing this connection's in-flight lists first)."""
        for key in self._inflight.values():
            try:
                self.client.delete(key)
            except Exception:  # the store is gone: the run's end removes the key
                pass
        self._inflight.clear()
        try:
            self.client.close()
        except Exception:  # pragma: no cover - already gone
            pass

    def _run(self, name: str, key: str, *args: Any) -> Any:
        redis = _redis()
        try:
            (reply,) = self._send_two(
                [("EVALSHA", self.scripts[name].sha, 1, key, *args)], key, write=name not in READ_ONLY
            )
            if isinstance(reply, redis.exceptions.NoScriptError):  # not yet on this node (a new one, after a failover)
                reply = self.scripts[name](keys=[key], args=list(args))
            if isinstance(reply, redis.ResponseError):
                raise reply
            return reply
        except redis.ResponseError as err:
            _raise(err)

    def _replicas(self, key: str) -> int:
        """How many replicas a write on ``key`` waits for: ``?wait=N``, at most those the slot has now."""
        want = self.store.address.wait
        if not want or time.monotonic() < self._short_until:
            return 0
        if self.store.address.cluster:
            nodes = self.client.nodes_manager.slots_cache.get(self.client.keyslot(key)) or []
            want = min(want, len(nodes) - 1)
        return max(want, 0)

    def _send_two(self, commands: list[tuple[Any, ...]], key: str, write: bool = False) -> list[Any]:
        """Send commands on ``key``'s node in one write and read each reply (errors as values); one round trip.

        On one Redis this uses the thread's own connection directly: redis-py's
        pipeline object costs more than the round trip it saves.  A ``write``
        ends with ``WAIT`` when the store asks for replicas (``?wait=N``).
        """
        redis = _redis()
        pool = conn = None
        replicas = self._replicas(key) if write else 0
        if replicas:
            commands = [*commands, ("WAIT", replicas, self.store.address.wait_ms)]
        try:
            if self.store.address.cluster:  # every command here is on one element: one slot, one node
                node = self.client.get_node_from_key(key)
                pool = self.client.get_redis_connection(node).connection_pool
                conn = pool.get_connection()
            else:
                conn = self.client.connection
            conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as err:
                    replies.append(err)
        except BaseException as err:
            if conn is not None:
                conn.disconnect()  # a reply may be unread: this connection cannot be reused
            if pool is not None and isinstance(err, (redis.ConnectionError, redis.TimeoutError)):
                try:  # the node is gone: ask the others who serves its slots now
                    self.client.nodes_manager.initialize()
                except redis.RedisError:
                    pass  # no answer yet: the next attempt asks again
            raise
        finally:
            if pool is not None and conn is not None:
                pool.release(conn)
        if pool is not None and any(
            isinstance(r, (redis.exceptions.MovedError, redis.exceptions.AskError)) for r in replies
        ):
            # The slot moved (a failover, a resharding): nothing ran; learn the new layout and send again.
            self.client.nodes_manager.initialize()
            raise redis.exceptions.TryAgainError("the element's slot moved")
        for reply in replies:
            if isinstance(reply, (redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError)):
                raise reply  # nothing ran on a cluster that is down: call() sends it again
        if replicas:
            acked = replies.pop()
            if isinstance(acked, int) and acked < replicas:
                # Not undone (Redis cannot), only said: and for a few seconds writes stop waiting for a
                # replica that does not answer, so a run goes on at full speed while a failover settles.
                self._short_until = time.monotonic() + 5.0
                log.warning(
                    "Redis store: a write reached %d of %d replica(s) within %d ms (wait=%d); it may be lost if "
                    "its master fails now",
                    acked,
                    replicas,
                    self.store.address.wait_ms,
                    self.store.address.wait,
                )
        return replies

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
            rid = f"{self.owner}|{self._seq}" if self.store.address.cluster else ""
            tickets = self._run("move", self.keys.meta(eid), wait, rid, *payloads)
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
        commands: list[tuple[Any, ...]] = []
        # On a cluster an unindexed observe moves its tuples into a list of its own, kept until the next
        # observe of this element: sent again after a failover, it finds them there instead of taking others.
        inflight = ""
        if self.store.address.cluster and not leased:
            inflight = f"f:{self.owner}:{self._seq}"
            mine = self.keys.key(eid, inflight)
            previous = self._inflight.get(eid)
            if previous is not None and previous != mine:
                commands.append(("DEL", previous))
            if self._retry:
                held = self._send_two([*commands, ("LRANGE", mine, 0, -1)], mine)[-1]
                if held:
                    self._inflight[eid] = mine
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
        if inflight:
            self._inflight[eid] = self.keys.key(eid, inflight)
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
