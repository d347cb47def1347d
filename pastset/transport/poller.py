"""Readiness of many sockets for the channel's event loop: epoll where there is one, else :mod:`selectors`.

epoll is used directly because the loop wakes twice per move+observe pair, and
``selectors``' bookkeeping around each wake-up was a few microseconds of it.
"""

from __future__ import annotations

import select
import selectors
import socket
from typing import Any

__all__ = ["IN", "OUT", "Poller"]

IN = select.EPOLLIN if hasattr(select, "epoll") else 1
OUT = select.EPOLLOUT if hasattr(select, "epoll") else 4
_IN, _OUT = IN, OUT


class Poller:
    """Readiness of many sockets: epoll where there is one (Linux), else :mod:`selectors`."""

    def __init__(self, epoll: bool = hasattr(select, "epoll")) -> None:
        self._epoll = select.epoll() if epoll else None
        self._selector = selectors.DefaultSelector() if self._epoll is None else None
        self._data: dict[int, Any] = {}

    def register(self, sock: socket.socket, data: Any, events: int = _IN) -> None:
        fd = sock.fileno()
        self._data[fd] = data
        if self._epoll is not None:
            self._epoll.register(fd, events)
        else:
            assert self._selector is not None
            self._selector.register(fd, _selector_events(events), data)

    def modify(self, sock: socket.socket, events: int) -> None:
        fd = sock.fileno()
        if fd not in self._data:
            return
        if self._epoll is not None:
            self._epoll.modify(fd, events)
        else:
            assert self._selector is not None
            if events:
                self._selector.modify(fd, _selector_events(events), self._data[fd])

    def unregister(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if self._data.pop(fd, _MISSING) is _MISSING:
            return
        if self._epoll is not None:
            self._epoll.unregister(fd)
        else:
            assert self._selector is not None
            self._selector.unregister(fd)

    def poll_events(self, timeout: float | None) -> list[tuple[Any, int]]:
        """(data, events) of the ready sockets (``timeout`` None: wait as long as it takes)."""
        if self._epoll is not None:
            data = self._data
            return [(data[fd], ev) for fd, ev in self._epoll.poll(-1 if timeout is None else timeout) if fd in data]
        assert self._selector is not None
        ready = []
        for key, ev in self._selector.select(timeout):
            ready.append(
                (key.data, (_IN if ev & selectors.EVENT_READ else 0) | (_OUT if ev & selectors.EVENT_WRITE else 0))
            )
        return ready

    def poll(self, timeout: float | None) -> list[Any]:
        """The data of the ready sockets."""
        return [data for data, _ in self.poll_events(timeout)]

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        elif self._selector is not None:
            self._selector.close()


def _selector_events(events: int) -> int:
    return (selectors.EVENT_READ if events & _IN else 0) | (selectors.EVENT_WRITE if events & _OUT else 0) or (
        selectors.EVENT_READ
    )


_MISSING = object()
