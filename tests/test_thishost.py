"""Which names and addresses are this machine's: the name set, /proc parsing, and is_this_host's rules.

Only numeric addresses, loopback names and malformed names are looked up, so no
test asks a DNS server; /proc is replaced by files in tmp_path where its parsing
is checked.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pastset import thishost
from pastset.thishost import interface_addresses, is_this_host, this_host_names

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.1.0.0/24 2 0 2
        |-- 10.1.0.0
           /24 link UNICAST
        |-- 10.1.0.7
           /32 host LOCAL
        |-- 10.1.0.255
           /32 link BROADCAST
  +-- 127.0.0.0/8 2 0 2
     |-- 127.0.0.1
        /32 host LOCAL
"""

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fe800000000000000000000000000abc 02 40 20 80     eth0

"""


def fake_proc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: dict[str, str]) -> None:
    """Make thishost read ``/proc/net/NAME`` from tmp_path (absent if not in ``files``)."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(thishost, "Path", lambda p: tmp_path / Path(p).name)


def test_interface_addresses_are_the_local_ones_of_both_families(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_proc(monkeypatch, tmp_path, {"fib_trie": FIB_TRIE, "if_inet6": IF_INET6})
    assert interface_addresses() == {"10.1.0.7", "127.0.0.1", "::1", "fe80::abc"}


def test_without_proc_there_are_no_interface_addresses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_proc(monkeypatch, tmp_path, {})
    assert interface_addresses() == set()


def test_this_machines_names_are_lowercase_and_include_loopback() -> None:
    names = this_host_names()
    assert {"", "localhost", "127.0.0.1", "::1", socket.gethostname().lower()} <= names
    assert all(n == n.lower() for n in names)


def test_a_known_name_counts_whatever_its_case_spacing_or_brackets() -> None:
    names = {"head", "::1"}
    assert is_this_host(" HEAD ", names=names, addresses={"192.0.2.99"})
    assert is_this_host("[::1]", names=names, addresses={"192.0.2.99"})


def test_an_address_counts_if_it_is_on_an_interface() -> None:
    assert is_this_host("10.1.0.7", names=set(), addresses={"10.1.0.7"})
    assert not is_this_host("10.1.0.8", names=set(), addresses={"10.1.0.7"})
    assert is_this_host("fe80::abc%eth0", names=set(), addresses={"fe80::abc"}), "a zone does not hide the address"


def test_a_name_counts_by_the_addresses_it_resolves_to() -> None:
    assert is_this_host("localhost", names=set(), addresses={"127.0.0.1", "::1"})
    assert not is_this_host("localhost", names=set(), addresses={"192.0.2.99"})


def test_a_name_that_cannot_be_resolved_is_not_this_host() -> None:
    assert not is_this_host("bad..name", names=set(), addresses={"127.0.0.1"})


def test_without_interface_addresses_binding_decides_and_the_wildcard_is_never_a_host() -> None:
    assert is_this_host("127.0.0.1", names=set(), addresses=set())
    assert not is_this_host("192.0.2.1", names=set(), addresses=set()), "TEST-NET-1 is on no interface"
    assert not is_this_host("0.0.0.0", names=set(), addresses=set()), "bindable, but names no host"


def test_this_host_by_default_and_a_documentation_address_not() -> None:
    assert is_this_host("localhost") and is_this_host("127.0.0.1")
    assert not is_this_host("192.0.2.1")
