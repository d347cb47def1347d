"""PSSTORE addresses (pastset.transport.redis_address): parsing, redaction, the same place, and connecting.

The common forms and errors are in tests/server/test_redis_store.py; here the
edges of the grammar, what the redacted form keeps and drops, and a client
opened by :func:`connect` on a real redis-server (the session's, on loopback).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from pastset.transport.redis_address import SCHEMES, StoreAddress, connect, parse_store


def parsed(text: str) -> StoreAddress:
    address = parse_store(text)
    assert address is not None
    return address


def test_blank_means_the_built_in_server_and_every_scheme_is_known_in_any_case() -> None:
    assert parse_store("   ") is None
    for scheme in SCHEMES:
        address = parsed(f"  {scheme.upper()}://h:1  ")
        assert address.tls == scheme.startswith("rediss")
        assert address.cluster == scheme.endswith("+cluster")


def test_user_and_password_are_unquoted_and_either_may_be_missing() -> None:
    both = parsed("redis://al%3Aice:p%40ss%3Aword@h:1")
    assert (both.username, both.password) == ("al:ice", "p@ss:word")
    password_only = parsed("redis://:secret@h:1")
    assert (password_only.username, password_only.password) == (None, "secret")
    user_only = parsed("redis://bob@h:1")
    assert (user_only.username, user_only.password) == ("bob", None)
    at_in_password = parsed("redis://u:a@b@h:1")  # the last '@' ends the credentials
    assert (at_in_password.password, at_in_password.nodes) == ("a@b", (("h", 1),))


def test_an_ipv6_host_in_brackets_is_its_address() -> None:
    assert parsed("redis://[::1]:6379").nodes == (("::1", 6379),)


@pytest.mark.parametrize("port", ["0", "65536", "-1", "http"])
def test_a_port_outside_1_to_65535_names_the_part_that_is_wrong(port: str) -> None:
    with pytest.raises(ValueError, match=f"'h:{port}' is not HOST:PORT"):
        parse_store(f"redis://h:{port}")


def test_a_missing_host_or_an_empty_cluster_entry_is_named() -> None:
    with pytest.raises(ValueError, match="':6379' is not HOST:PORT"):
        parse_store("redis://:6379")
    with pytest.raises(ValueError, match=r"'\(nothing\)' is not HOST:PORT"):
        parse_store("redis+cluster://h:1,,h:2")


def test_the_database_must_be_a_number() -> None:
    assert parsed("redis://h:1/15").db == 15
    with pytest.raises(ValueError, match="database after '/' must be a number"):
        parse_store("redis://h:1/zero")


def test_an_unknown_option_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown option\\(s\\) a, b; known: ssl_ca_certs, .*wait, wait_ms"):
        parse_store("redis://h:1?b=1&a=2")


def test_wait_defaults_to_none_and_a_repeated_option_takes_its_last_value() -> None:
    plain = parsed("redis://h:1")
    assert (plain.wait, plain.wait_ms, plain.options) == (0, 1000, {})
    repeated = parsed("rediss://h:1?wait=1&wait=3&ssl_ca_certs=/a&ssl_ca_certs=/b")
    assert (repeated.wait, repeated.options) == (3, {"ssl_ca_certs": "/b"})


def test_the_redacted_form_drops_only_the_password() -> None:
    address = parsed("rediss://alice:hunter2@db.example:6380/4?ssl_certfile=/c&ssl_ca_certs=/a&wait=2&wait_ms=70")
    shown = address.redacted()
    assert "hunter2" not in shown
    assert shown.startswith("rediss://alice@db.example:6380/4?")
    assert shown.split("?", 1)[1] == "ssl_ca_certs=/a&ssl_certfile=/c&wait=2&wait_ms=70"
    again = parsed(shown)
    assert again.password is None
    assert again == StoreAddress(**{**address.__dict__, "password": None})


def test_the_redacted_form_shows_no_database_0_and_no_wait_that_is_off() -> None:
    assert parsed("redis://:pw@h:1/0").redacted() == "redis://h:1"
    assert parsed("redis+cluster://h:1,h:2?wait=0").redacted() == "redis+cluster://h:1,h:2"


def test_the_same_place_ignores_credentials_and_a_cluster_is_known_by_any_node() -> None:
    assert parsed("redis://a:x@h:1/2").same_place(parsed("redis://b:y@h:1/2"))
    assert not parsed("redis://h:1/2").same_place(parsed("redis://h:1/3"))
    assert not parsed("redis://h:1").same_place(parsed("rediss://h:1"))
    assert not parsed("redis://h:1").same_place(parsed("redis://h:2"))
    assert parsed("redis+cluster://a:1,b:2").same_place(parsed("redis+cluster://b:2,c:3"))
    assert not parsed("redis+cluster://a:1").same_place(parsed("redis+cluster://c:3"))
    assert not parsed("redis+cluster://a:1").same_place(parsed("redis://a:1"))


def test_connect_opens_a_named_client_on_the_database_asked_for(redis_single: Any) -> None:
    name = f"pstest-{uuid.uuid4().hex[:8]}"
    key = f"{name}:k"
    client = connect(parsed(f"{redis_single.url}/3"), name=name)
    other = redis_single.client()
    try:
        assert client.client_getname() == name
        client.set(key, b"v")
        assert other.get(key) is None, "database 0 does not see it"
        other.execute_command("SELECT", 3)
        assert other.get(key) == b"v"
    finally:
        client.delete(key)
        client.close()
        other.close()
