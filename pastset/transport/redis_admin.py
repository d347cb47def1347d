"""The server's side of a Redis store: element statistics, handing back leases, the end of a run.

Clients talk to Redis themselves (:mod:`pastset.transport.redis_store`); the
PastSet server only watches: it reads what ``pypsmanage elements`` and the web
page show, hands the leased tuples of connections that are gone back to their
elements, wakes blocked callers when the run ends, and removes the run's keys
(``pypsclean`` too, for a run that died).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pastset import wire
from pastset.errors import ConfigurationError
from pastset.transport.redis_address import StoreAddress, _redis, connect
from pastset.transport.redis_scripts import SCRIPTS, Keys

__all__ = ["StoreAdmin", "count_keys", "purge", "run_names"]

log = logging.getLogger(__name__)


class StoreAdmin:
    """The server's view of a run's elements in Redis: statistics, handing back leases, the end of the run."""

    def __init__(self, address: StoreAddress, run: str) -> None:
        self.address = address
        self.keys = Keys(run)
        redis = _redis()
        try:
            self.client = connect(address, f"ps-admin-{uuid.uuid4().hex[:12]}")
            self.client.ping()
        except redis.RedisError as err:
            raise ConfigurationError(
                f"cannot reach the Redis store {address.redacted()} (PSSTORE): {err}; "
                "check the address and credentials, and that redis-server runs there"
            ) from None
        self.scripts = {name: self.client.register_script(text) for name, text in SCRIPTS.items()}

    def _elements(self) -> list[tuple[int, bool]]:
        rows = []
        for value in self.client.hgetall(self.keys.registry).values():
            eid, _, flag = value.decode().partition(":")
            rows.append((int(eid), flag == "1"))
        return sorted(rows)

    def describe(self) -> list[dict[str, Any]]:
        """A summary of every live element (the same rows as the built-in server's)."""
        rows = []
        for eid, _ in self._elements():
            try:
                template, first, last, delta, stored, _leases, _blocked = self.scripts["info"](
                    keys=[self.keys.meta(eid)], args=["stats"]
                )
            except _redis().ResponseError:
                continue  # deleted meanwhile
            rows.append(
                {
                    "id": eid,
                    "template": repr(wire.decode(template)),
                    "first": int(first),
                    "last": int(last),
                    "delta": int(delta) if delta else None,
                    "stored": int(stored),
                    "xfunction": "",
                }
            )
        return rows

    def _scan(self) -> tuple[list[tuple[int, int, int]], set[str], bool]:
        """(first and last of every element, tasks blocked, whether some blocked call can go on now)."""
        alive = self._connected()
        state, blocked, ready = [], set(), False
        for eid, _ in self._elements():
            meta = self.keys.meta(eid)
            try:
                _t, first, last, delta, _s, _l, movers = self.scripts["info"](keys=[meta], args=["stats"])
            except _redis().ResponseError:
                continue
            first, last, movers = int(first), int(last), int(movers)
            state.append((eid, first, last))
            for owner, value in self.client.hgetall(self.keys.key(eid, "wt")).items():
                if owner.decode() not in alive:
                    continue
                task, _, what = value.decode().rpartition("|")
                blocked.add(task)
                if what == "o":
                    ready = ready or first < last
                elif what.startswith("i:"):
                    ready = ready or last > int(what[2:])
                else:
                    bound = int(delta) if delta else 0
                    ready = ready or bound <= 0 or last - first < bound
        return state, blocked, ready

    def quiet(self, running: set[str]) -> bool:
        """True if every running task is blocked in Redis and none of those calls can go on.

        Two scans that see the same elements guard against a change in between.
        """
        before, blocked, ready = self._scan()
        if ready or not running <= blocked:
            return False
        after, blocked, ready = self._scan()
        return after == before and not ready and running <= blocked

    def _connected(self) -> set[str]:
        got = self.client.client_list(**({"target_nodes": "primaries"} if self.address.cluster else {}))
        lists = got.values() if isinstance(got, dict) else [got]
        return {c.get("name", "") for each in lists for c in each}

    def hand_back(self) -> int:
        """Give the leased tuples of connections that are gone to the next observers; how many."""
        moved = 0
        alive: set[str] | None = None
        for eid, leased in self._elements():
            if not leased:
                continue
            meta = self.keys.meta(eid)
            owners = [o.decode() for o in self.scripts["owners"](keys=[meta])]
            if not owners:
                continue
            if alive is None:
                alive = self._connected()
            dead = [o for o in owners if o not in alive]
            if dead:
                n = self.scripts["hand_back"](keys=[meta], args=dead)
                if n:
                    log.info(
                        "%d leased tuple(s) of element %d handed back: their observers' connections closed", n, eid
                    )
                moved += n
        return moved

    def end(self, reason: str, keep: bool = False) -> None:
        """End the run: wake every blocked caller with RunEndedError, then remove the run's keys unless ``keep``."""
        for eid, _ in self._elements():
            try:
                self.scripts["delete"](keys=[self.keys.meta(eid)], args=[f"RunEndedError {reason}"])
            except _redis().RedisError:
                continue
        if not keep:
            self.purge()

    def purge(self) -> int:
        """Remove every key of the run; how many."""
        return purge(self.client, self.keys, self.address.cluster)

    def close(self) -> None:
        """Close the connection."""
        try:
            self.client.close()
        except Exception:  # pragma: no cover
            pass


def purge(client: Any, keys: Keys, cluster: bool) -> int:
    """Remove every key of ``keys``' run from ``client``'s Redis (every primary of a cluster)."""
    removed = 0
    for pattern in keys.patterns():
        if cluster:
            for node in client.get_primaries():
                found = list(client.scan_iter(match=pattern, count=1000, target_nodes=node))
                for key in found:
                    removed += client.unlink(key)
        else:
            batch = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(batch), 500):
                removed += client.unlink(*batch[i : i + 500])
    return removed


def count_keys(client: Any, keys: Keys, cluster: bool) -> int:
    """How many keys ``keys``' run has in ``client``'s Redis."""
    total = 0
    for pattern in keys.patterns():
        for node in client.get_primaries() if cluster else [None]:
            extra = {"target_nodes": node} if cluster else {}
            total += sum(1 for _ in client.scan_iter(match=pattern, count=1000, **extra))
    return total


def run_names(client: Any, cluster: bool) -> set[str]:
    """The runs that have keys in this Redis (for pypsclean)."""
    names = set()
    nodes = client.get_primaries() if cluster else [None]
    for node in nodes:
        extra = {"target_nodes": node} if cluster else {}
        for key in client.scan_iter(match="{ps:*}:reg", count=1000, **extra):
            names.add(key.decode()[4:].rpartition("}")[0])
    return names
