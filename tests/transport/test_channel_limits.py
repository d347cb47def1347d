"""The channel's limits: the fixed handshake and PSMAXINFLIGHT, each with a clear error."""

from __future__ import annotations

import socket
import struct

import pytest
from conftest import start_server, stop_server

import pastset
from pastset.errors import SerialisationError
from pastset.transport.channel import HELLO, HELLO_MAGIC, Hello, encode_hello, parse_hello


def test_the_handshake_is_parsed_without_the_codec_and_capped():
    data = bytearray(encode_hello(Hello("s", "run", "t1", "host", "app.py", 42)))
    partial = bytearray(data[:10])
    assert parse_hello(partial) is None  # not all there yet
    assert parse_hello(data) == Hello("s", "run", "t1", "host", "app.py", 42) and not data
    with pytest.raises(ConnectionError, match="over the limit"):
        parse_hello(bytearray(HELLO.pack(HELLO_MAGIC, 60000, 0, 0, 0, 0, 1)))
    with pytest.raises(ConnectionError, match="no PastSet channel handshake"):
        parse_hello(bytearray(struct.pack("!IH", 10, 0) + b"x" * 20))
    with pytest.raises(ValueError, match="over the limit"):
        encode_hello(Hello("s" * 5000, "run", "", "", "", 0))


def test_psmaxinflight_refuses_a_larger_request_in_the_caller(tmp_path, monkeypatch):
    monkeypatch.setenv("PSMAXINFLIGHT", "1M")
    srv = start_server(tmp_path)
    try:
        pset = pastset.PastSet(run=srv.run, ns=srv.address)
        e = pset.enter(("blob", bytes))
        with pytest.raises(SerialisationError, match="PSMAXINFLIGHT"):
            e.move((b"x" * (2 << 20),))
        e.move((b"y" * (512 << 10),))  # under the limit: served, and the connection is still good
        assert e.observe() == (b"y" * (512 << 10),)
        host, port = pset._channel
        with socket.create_connection((host, port), timeout=5) as raw:  # a claimed 60 kB handshake
            raw.sendall(HELLO.pack(HELLO_MAGIC, 60000, 0, 0, 0, 0, 1))
            raw.settimeout(5)
            assert raw.recv(100) == b""  # closed without an answer
        assert e.first() == 1
    finally:
        stop_server(srv)
