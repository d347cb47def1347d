"""Pyro5 proxies for a run: msgpack on the wire and the run's secret in the handshake.

Every connection to a run's server — the name server included, which lives in
the same daemon — presents the run's secret; the server refuses a connection
without it before any request is read.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import Pyro5.api
import Pyro5.core
import Pyro5.errors

from pastset.errors import PastSetConnectionError
from pastset.transport import tls
from pastset.transport.channel import app_name, keep_alive_socket

__all__ = ["connection_error", "keep_alive", "lookup", "proxy", "refused"]


def proxy(uri: Any, secret: str = "", task: str = "", timeout: float | None = None) -> Pyro5.api.Proxy:
    """A proxy for ``uri`` that speaks msgpack and presents ``secret`` (and ``task``)."""
    made = Pyro5.api.Proxy(uri)
    made._pyroSerializer = "msgpack"
    made._pyroHandshake = {
        "secret": secret,
        "task": task,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "app": app_name(),
    }
    if timeout is not None:
        made._pyroTimeout = timeout
    return made


def keep_alive(made: Pyro5.api.Proxy, seconds: float) -> None:
    """Connect now and let TCP keepalive notice, within about ``seconds``, a server that vanished.

    A caller blocked in ``observe`` sends nothing; without keepalive a server
    cut off by the network (no reset ever arrives) would leave it waiting forever.
    """
    made._pyroBind()
    keep_alive_socket(made._pyroConnection.sock, seconds)


def lookup(address: str, name: str, secret: str = "", timeout: float = 10.0) -> Any:
    """Resolve ``name`` in the name server at ``address`` (HOST:PORT)."""
    host, _, port = address.rpartition(":")
    with proxy(f"PYRO:{Pyro5.core.NAMESERVER_NAME}@{host}:{port}", secret, timeout=timeout) as ns:
        return ns.lookup(name)


def refused(err: Exception) -> bool:
    """True if ``err`` is the server refusing our handshake (a wrong or missing secret)."""
    return isinstance(err, Pyro5.errors.CommunicationError) and "secret" in str(err)


def connection_error(where: str, err: Exception) -> PastSetConnectionError:
    """A clear error for a failed connection, telling a refused secret apart."""
    if refused(err):
        return PastSetConnectionError(
            f"the PastSet server at {where} refused the connection: this run needs its secret (PSSECRET); "
            "programs started by pypsrun get it automatically"
        )
    hint = tls.hint(err)
    return PastSetConnectionError(f"cannot reach the PastSet server at {where}: {err}" + (f"; {hint}" if hint else ""))
