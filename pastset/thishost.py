"""Which names and addresses are this machine's: local hosts get local processes.

A run starts a host's processes directly when the host is this machine and over
SSH otherwise, so PSMASTER, a hosts-file line or a batch node is compared with
every name this machine knows itself by and with every address configured on
its interfaces.  Kept apart from the settings: it asks the system (resolver,
``/proc/net``), not the environment.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

__all__ = ["interface_addresses", "is_this_host", "this_host_names"]


def this_host_names() -> set[str]:
    """Names and addresses by which this machine knows itself."""
    names = {"", "localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    try:
        host, aliases, addresses = socket.gethostbyname_ex(socket.gethostname())
        names.update([host, *aliases, *addresses])
    except OSError:
        pass
    return {n.lower() for n in names}


def interface_addresses() -> set[str]:
    """Every IP address configured on this machine's interfaces (in this network namespace).

    Read from ``/proc/net/fib_trie`` (IPv4 addresses marked ``host LOCAL``) and
    ``/proc/net/if_inet6``, so no extra package is needed; empty where /proc
    does not have them (then :func:`is_this_host` tries to bind the address).
    """
    found: set[str] = set()
    try:
        previous = ""
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            text = line.strip()
            if text.startswith("|-- "):
                previous = text[4:]
            elif text == "/32 host LOCAL" and previous:
                found.add(previous)
    except OSError:
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            word = line.split()[0] if line.split() else ""
            if len(word) == 32:
                found.add(ipaddress.IPv6Address(int(word, 16)).compressed)
    except (OSError, ValueError):
        pass
    return found


def _bindable(address: str) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


def is_this_host(host: str, names: set[str] | None = None, addresses: set[str] | None = None) -> bool:
    """True if ``host`` (a name or an address) names this machine, by any of its addresses.

    A name counts if it is one this machine knows itself by, or if any address
    it resolves to is configured on one of this machine's interfaces (a head
    node named by its cluster address, ``PSMASTER=10.1.0.1``, is local even if
    ``gethostbyname_ex(hostname)`` says nothing about that address).
    """
    host = host.strip().strip("[]").lower()
    if host in (this_host_names() if names is None else names):
        return True
    try:
        infos = socket.getaddrinfo(host.partition("%")[0], None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    mine = interface_addresses() if addresses is None else addresses
    for info in infos:
        address = str(info[4][0]).partition("%")[0]
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            continue
        if parsed.compressed in mine:
            return True
        if not mine and not parsed.is_unspecified and _bindable(address):  # no /proc: binding tells
            return True
    return False
