"""One client connection to a space, whatever carries it: ``call(message) -> reply``.

:class:`pastset.client.PastSet` talks to the space only through :class:`Link`;
which kind of link a thread gets is decided in :func:`open_link` and nowhere
else.  A message is the plain tuple ``(op, *args)`` (see
:mod:`pastset.transport.ops`); a reply is ``(0, result)`` or ``(1, error class
name, message, remote traceback)``.  A link raises :class:`ConnectionError`
when the connection breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import Pyro5.api
import Pyro5.errors

from pastset import wire
from pastset.transport.channel import Channel
from pastset.transport.proxies import connection_error, keep_alive, proxy

__all__ = ["ChannelLink", "Link", "LinkSpec", "PyroLink", "open_link"]


class Link(Protocol):
    """A connection to a space that runs one request at a time."""

    def call(self, message: tuple) -> tuple:
        """Send ``message`` and return the decoded reply; ConnectionError if the connection broke."""

    def close(self) -> None:
        """Close the connection; a call blocked in another thread then fails."""


@dataclass
class LinkSpec:
    """Where and as whom a client connects: what every kind of link needs."""

    uri: str
    run: str
    secret: str
    task: str
    deadtime: float
    where: str
    #: the direct channel's (host, port), None to go through Pyro5
    channel: tuple[str, int] | None = None
    #: the run's Redis store (pastset.transport.redis_store.RedisStore), None when elements live in the server
    store: Any = None


class ChannelLink:
    """A link over the direct channel (:mod:`pastset.transport.channel`), large arrays out of band."""

    def __init__(self, spec: LinkSpec) -> None:
        assert spec.channel is not None
        host, port = spec.channel
        self._channel = Channel(host, port, spec.run, spec.secret, spec.task, spec.deadtime)

    def call(self, message: tuple) -> tuple:
        parts = wire.encode_parts(message)  # refuses unsendable values before anything is sent
        reply: tuple = wire.decode_parts(*self._channel.exchange(parts))
        return reply

    def close(self) -> None:
        self._channel.close()


class PyroLink:
    """A link through a Pyro5 proxy of the space (the channel is off, or TLS is on)."""

    def __init__(self, spec: LinkSpec) -> None:
        self._proxy = proxy(spec.uri, spec.secret, spec.task)
        try:
            keep_alive(self._proxy, spec.deadtime)
        except Pyro5.errors.CommunicationError as err:
            raise connection_error(spec.where, err) from None

    def call(self, message: tuple) -> tuple:
        try:
            reply: tuple = wire.decode(self._proxy.call(wire.encode(message)))
        except Pyro5.errors.CommunicationError as err:
            raise ConnectionError(str(err)) from None
        return reply

    def close(self) -> None:
        self._proxy._pyroRelease()


class StoreLink:
    """Element operations straight to the run's Redis store; the others (spawn, halt, ...) to the server."""

    def __init__(self, spec: LinkSpec) -> None:
        from pastset.transport.redis_store import OPS, RedisLink

        self._ops = OPS
        self._spec = spec
        self._store = RedisLink(spec.store)
        self._server: Link | None = None

    def call(self, message: tuple) -> tuple:
        if message[0] in self._ops:
            return self._store.call(message)
        if self._server is None:
            self._server = _server_link(self._spec)
        return self._server.call(message)

    def close(self) -> None:
        self._store.close()
        if self._server is not None:
            self._server.close()


def open_link(spec: LinkSpec) -> Link:
    """This thread's new connection to the space: the Redis store, the channel if the server offers one, else Pyro5."""
    if spec.store is not None:
        return StoreLink(spec)
    return _server_link(spec)


def _server_link(spec: LinkSpec) -> Link:
    if spec.channel is not None:
        return ChannelLink(spec)
    return PyroLink(spec)
