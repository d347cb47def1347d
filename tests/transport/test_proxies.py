"""Pyro5 proxies for a run (pastset.transport.proxies): msgpack, the handshake, keepalive, lookup, clear errors.

A name-server daemon runs in this process on loopback; it records every
handshake it is offered and refuses one without the run's secret, as the
real server does (pastset.server.host).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import Pyro5.api
import Pyro5.errors
import Pyro5.nameserver
import pytest
from Pyro5 import config as pyro_config

from pastset.errors import PastSetConnectionError
from pastset.transport.channel import app_name
from pastset.transport.proxies import connection_error, keep_alive, lookup, proxy, refused

pytestmark = pytest.mark.timeout(60)

SECRET = "proxies-secret"


class Echo:
    @Pyro5.api.expose
    def echo(self, value: Any) -> Any:
        return value


class Daemon(Pyro5.nameserver.NameServerDaemon):
    def __init__(self) -> None:
        self.handshakes: list[Any] = []
        super().__init__(host="127.0.0.1", port=0)

    def validateHandshake(self, conn: Any, data: Any) -> Any:
        self.handshakes.append(data)
        if not isinstance(data, dict) or data.get("secret") != SECRET:
            raise Pyro5.errors.SecurityError("this PastSet run needs its secret")
        return "ok"


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, str]]:
    monkeypatch.setattr(pyro_config, "POLLTIMEOUT", 0.05)
    made = Daemon()
    uri = made.register(Echo(), "echo")
    made.nameserver.register("run.echo", uri)
    thread = threading.Thread(target=made.requestLoop, daemon=True)
    thread.start()
    try:
        yield made, str(uri)
    finally:
        made.shutdown()
        thread.join(10)
        made.close()
        assert not thread.is_alive()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_proxy_speaks_msgpack_and_presents_secret_task_host_pid_and_app(daemon: tuple[Daemon, str]) -> None:
    made, uri = daemon
    with proxy(uri, SECRET, "task-7", timeout=5) as echo:
        assert echo._pyroSerializer == "msgpack"
        assert echo._pyroTimeout == 5
        assert echo.echo(b"bytes ok") == b"bytes ok"  # msgpack keeps bytes; serpent would not
    assert made.handshakes[-1] == {
        "secret": SECRET,
        "task": "task-7",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "app": app_name(),
    }


def test_without_a_timeout_the_proxy_keeps_pyro5_s_default() -> None:
    uri = "PYRO:x@127.0.0.1:1"
    assert proxy(uri)._pyroTimeout == Pyro5.api.Proxy(uri)._pyroTimeout
    assert proxy(uri, timeout=2.5)._pyroTimeout == 2.5


def test_keep_alive_connects_now_with_tcp_keepalive_on(daemon: tuple[Daemon, str]) -> None:
    made, uri = daemon
    echo = proxy(uri, SECRET, timeout=5)
    try:
        assert echo._pyroConnection is None
        before = len(made.handshakes)
        keep_alive(echo, 6.0)
        assert len(made.handshakes) == before + 1, "connected at once, not at the first call"
        sock = echo._pyroConnection.sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 3
    finally:
        echo._pyroRelease()


def test_lookup_resolves_a_name_in_the_run_s_name_server_with_its_secret(daemon: tuple[Daemon, str]) -> None:
    made, uri = daemon
    found = lookup(made.locationStr, "run.echo", SECRET, timeout=5)
    assert str(found) == uri
    assert made.handshakes[-1]["secret"] == SECRET
    with pytest.raises(Pyro5.errors.NamingError):
        lookup(made.locationStr, "no.such.name", SECRET, timeout=5)


def test_a_wrong_secret_is_refused_and_told_apart_with_the_fix(daemon: tuple[Daemon, str]) -> None:
    made, uri = daemon
    with pytest.raises(Pyro5.errors.CommunicationError) as raised, proxy(uri, "wrong", timeout=5) as echo:
        echo.echo(1)
    assert made.handshakes[-1]["secret"] == "wrong", "refused at the handshake, not for a lack of connection"
    assert refused(raised.value)
    error = connection_error("host:1234", raised.value)
    assert isinstance(error, PastSetConnectionError)
    assert "at host:1234 refused the connection" in str(error) and "PSSECRET" in str(error)


def test_an_unreachable_server_is_a_connection_error_naming_where(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYRO_SSL", raising=False)
    port = free_port()
    with pytest.raises(Pyro5.errors.CommunicationError) as raised, proxy(f"PYRO:x@127.0.0.1:{port}", timeout=5) as p:
        p._pyroBind()
    assert not refused(raised.value)
    error = connection_error(f"127.0.0.1:{port}", raised.value)
    assert str(error).startswith(f"cannot reach the PastSet server at 127.0.0.1:{port}: ")
    assert "PSSECRET" not in str(error)


def test_only_a_communication_error_about_the_secret_is_a_refusal() -> None:
    assert refused(Pyro5.errors.CommunicationError("this PastSet run needs its secret"))
    assert not refused(Pyro5.errors.CommunicationError("connection refused"))
    assert not refused(ValueError("secret"))
