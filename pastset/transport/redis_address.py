"""Where a Redis store is and how to reach it: the ``PSSTORE`` address and the redis-py client for it.

:func:`parse_store` reads ``PSSTORE`` (``redis://``, ``rediss://``,
``redis+cluster://``, ``rediss+cluster://``, with ``?wait=N&wait_ms=T`` for
writes that wait for replicas) into a :class:`StoreAddress`, whose
:meth:`~StoreAddress.redacted` form is safe to show and to hand to clients;
:func:`connect` opens a redis-py client on it.  They live apart from the links
(:mod:`pastset.transport.redis_store`) because the server, ``pypsclean`` and
the client's start-up parse and connect without running any element operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from pastset.errors import ConfigurationError

__all__ = ["FAILOVER_RETRIES", "SCHEMES", "StoreAddress", "connect", "parse_store"]

SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")
#: Attempts of a cluster command while a failover runs (backing off to 0.5 s: about 15 s in all).
FAILOVER_RETRIES = 40


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
