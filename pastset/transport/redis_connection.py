"""One thread's connection to a Redis store, and what makes a request sent again after a failover count once.

:class:`StoreConnection` is the part of a :class:`~pastset.transport.redis_store.RedisLink`
that gets requests to the store; the link adds the element operations.  It
holds the bookkeeping that lets a request survive a Redis Cluster failover
(doc/reliability.md) without taking effect twice:

* :meth:`~StoreConnection.call` numbers each request (``_seq``) and, when the
  connection breaks or the cluster is down, sends it again with the same number
  (``_retry`` set) until a replica has taken over, for at most
  :data:`FAILOVER_WAIT` seconds.
* a move carries ``OWNER|N`` (:meth:`~StoreConnection._request_id`): the
  script remembers the last number it ran per connection, so a resent move
  runs once.
* an unindexed observe takes its tuples into an in-flight list
  ``f:OWNER:N`` of its own (:meth:`~StoreConnection._inflight_list`), kept
  until the next observe of the element: resent, it finds them there instead
  of taking others (which would lose the first ones).  ``_inflight`` maps each
  element to its list, and :meth:`~StoreConnection.close` clears them.
* :meth:`~StoreConnection._send_two` sends an element's commands to its node
  in one round trip, learns the new layout when a slot moved, and ends a write
  with ``WAIT`` when the store asks for replicas (``?wait=N``;
  :meth:`~StoreConnection._replicas`); a write that reaches too few is said in
  the log, and for a few seconds (``_short_until``) writes stop waiting.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from pastset.errors import PastSetConnectionError, PastSetError, RemoteError
from pastset.transport.redis_address import StoreAddress, _redis, connect
from pastset.transport.redis_scripts import READ_ONLY, SCRIPTS, Keys, _raise

__all__ = ["FAILOVER_WAIT", "StoreConnection"]

log = logging.getLogger(__name__)

#: How long a request is tried again while a cluster fails over before the caller gets a connection error.
FAILOVER_WAIT = 30.0


class StoreConnection:
    """A named redis-py connection whose requests are numbered, resent across a failover, and replicated."""

    #: The requests :meth:`call` answers: operation name -> the method that runs it (set by the subclass).
    _ops: dict[str, Callable[..., Any]]

    def __init__(self, address: StoreAddress, keys: Keys) -> None:
        self.address = address
        self.keys = keys
        self.owner = f"ps-{uuid.uuid4().hex}"
        #: This connection's request number; a request sent again after a failover keeps its number, so the
        #: scripts recognise a move that already took effect and an observe finds the tuple it already took.
        self._seq = 0
        self._retry = False
        #: On a cluster, an unindexed observe takes its tuples into a list of its own ("in flight") that the
        #: next observe of the element clears: element -> that list's key.
        self._inflight: dict[int, str] = {}
        self._short_until = 0.0
        try:
            self.client = connect(address, self.owner)
            self.scripts = {name: self.client.register_script(text) for name, text in SCRIPTS.items()}
        except _redis().RedisError as err:
            raise PastSetConnectionError(f"cannot reach the Redis store {address.redacted()}: {err}") from None

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
                if not self.address.cluster or time.monotonic() > until:
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

    # ------------------------------------------------- resending a request once
    def _request_id(self) -> str:
        """What a move carries so that, sent again after a failover, it takes effect once ("" off a cluster)."""
        return f"{self.owner}|{self._seq}" if self.address.cluster else ""

    def _inflight_list(self, eid: int) -> tuple[str, list[tuple[Any, ...]], list[bytes] | None]:
        """Where an unindexed, unleased observe of ``eid`` takes its tuples ("" off a cluster).

        Returns the in-flight list's name (a part of the element's keys), the
        commands to send before the take (dropping the previous observe's list),
        and, when this request is being sent again, the tuples its earlier
        attempt already took (None or empty: take new ones).
        """
        if not self.address.cluster:
            return "", [], None
        commands: list[tuple[Any, ...]] = []
        inflight = f"f:{self.owner}:{self._seq}"
        mine = self.keys.key(eid, inflight)
        previous = self._inflight.get(eid)
        if previous is not None and previous != mine:
            commands.append(("DEL", previous))
        if self._retry:
            held = self._send_two([*commands, ("LRANGE", mine, 0, -1)], mine)[-1]
            if held:
                self._inflight[eid] = mine
                return inflight, commands, held
        return inflight, commands, None

    def _hold_inflight(self, eid: int, inflight: str) -> None:
        """Remember ``eid``'s in-flight list ``inflight`` (from :meth:`_inflight_list`) until its next observe."""
        if inflight:
            self._inflight[eid] = self.keys.key(eid, inflight)

    # ----------------------------------------------------- sending to the node
    def _run(self, name: str, key: str, *args: Any) -> Any:
        """Run the script ``name`` on ``key``'s element; its refusal raises that PastSet error."""
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
        want = self.address.wait
        if not want or time.monotonic() < self._short_until:
            return 0
        if self.address.cluster:
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
            commands = [*commands, ("WAIT", replicas, self.address.wait_ms)]
        try:
            if self.address.cluster:  # every command here is on one element: one slot, one node
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
                    self.address.wait_ms,
                    self.address.wait,
                )
        return replies
